"""The gateway role: the Falcon app under gunicorn, bound to every --listen address."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from pouch.proto.config import DaemonConfig

GUNICORN_CONF = Path(__file__).resolve().parent.parent / "deploy" / "gunicorn.conf.py"


def bind_address(listen: str) -> str:
    """pouchd's --listen form to gunicorn's bind form."""
    if listen.startswith("unix://"):
        return "unix:" + listen[len("unix://"):]
    if listen.startswith("tcp://"):
        return listen[len("tcp://"):]
    return listen


class Gateway(BaseApplication):
    def __init__(self, config: DaemonConfig) -> None:
        self.daemon_config = config
        super().__init__()

    def load_config(self) -> None:
        for key, value in runpy.run_path(str(GUNICORN_CONF)).items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)
        config = self.daemon_config
        settings: dict[str, Any] = {
            "bind": [bind_address(a) for a in config.listen],
            "workers": config.gateway_workers,
            "threads": config.gateway_threads,
            "pidfile": str(config.pid_path("gateway")),
            "loglevel": "debug" if config.debug else "info",
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from pouch.gateway.app import create_app
        return create_app(self.daemon_config)


def run_gateway(config: DaemonConfig) -> int:
    for address in config.listen:
        if address.startswith("unix://"):
            Path(address[len("unix://"):]).parent.mkdir(parents=True, exist_ok=True)
    Gateway(config).run()
    return 0
