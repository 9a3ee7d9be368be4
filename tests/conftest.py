"""Suite-wide setup: one torch thread, no outbound network, temp media, role fixtures."""
from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

try:  # the web-only install has no torch; engine tests import it themselves
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

_LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")
_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith(_LOOPBACK) or host.startswith("/")) and self.family != socket.AF_UNIX:
        raise OSError(f"tests may not reach the network (tried {address!r})")
    return _real_connect(self, address)


def pytest_configure(config):
    socket.socket.connect = _guarded_connect


@pytest.fixture(autouse=True)
def _media_root(request, tmp_path_factory):
    """Every test writes media and artifacts into its own temp folders."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    settings = request.getfixturevalue("settings")
    settings.MEDIA_ROOT = tmp_path_factory.mktemp("media")
    settings.ARTIFACTS_ROOT = tmp_path_factory.mktemp("artifacts")
