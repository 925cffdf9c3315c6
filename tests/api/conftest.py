"""Fixtures for the API tests: a tiny model (hidden 64, 4 blocks), the whole model in this process, and the API
server over it on a free loopback port."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from potluck.core.model.tiny import make_tiny_model

    return str(make_tiny_model("llama", tmp_path_factory.mktemp("api-model") / "tiny-llama", layers=4, hidden=64,
                               seed=3))


@pytest.fixture(scope="session")
def local_model(tiny_model):
    from potluck.core.client.local import LocalModelForCausalLM

    return LocalModelForCausalLM.from_pretrained(tiny_model)


class RunningApi:
    def __init__(self, model, names, **app_options):
        from potluck.core.api.app import create_app
        from potluck.core.api.engine import CausalLMEngine
        from potluck.core.api.server import ApiServer, bind_tcp, check_listen

        self.app = create_app(CausalLMEngine(model, names), allowed_hosts=check_listen("127.0.0.1", None),
                              **app_options)
        self.server = ApiServer(self.app, bind_tcp("127.0.0.1", 0))
        self.server.start()
        self.url = self.server.url
        self.stats = self.app.routes.stats

    def client(self, **kwargs):
        import openai

        return openai.OpenAI(base_url=self.url, api_key=kwargs.pop("api_key", "unused"), max_retries=0, **kwargs)

    def stop(self):
        self.server.stop()


@pytest.fixture(scope="module")
def api(local_model, tiny_model):
    running = RunningApi(local_model, ["tiny-llama", tiny_model])
    yield running
    running.stop()
