"""The desktop app, installed as `potluck.app`: PySide6 only, never torch, transformers or hivemind. It runs the
node (core/node/) as a child process and talks to it through core/protocol.py (docs/APP.md).

- `entry.py`: the `potluck` program (no arguments: the GUI; anything else: the CLI). `main.py`: the QApplication.
- `app_controller.py`: wires the windows to the node. `node_process.py`, `node_command.py`: owning the node.
- windows: `wizard.py`, `dashboard.py`, `chat.py`, `settings.py`, `tray.py`; widgets in their own files.
- `config_store.py`, `secrets_store.py`, `paths.py`: settings, secrets (via core/secrets.py) and folders.
"""
