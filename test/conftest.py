"""Settings shared by every test; helpers live in importable modules beside this file
(``synthetic``, ``ros_support``, ``kitti_fake``: the ``pythonpath`` setting in pyproject.toml)."""

from __future__ import annotations

import shutil

import pytest
import torch

torch.set_num_threads(max(1, torch.get_num_threads()))

# modules with a failed test or fixture: their temporary folders stay for a look afterwards
_MODULES_WITH_FAILURES: set[str] = set()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        _MODULES_WITH_FAILURES.add(item.module.__name__)
    return report


@pytest.fixture(scope="module", autouse=True)
def _module_temporary_folders(request, tmp_path_factory):
    """Removes the folders a module's fixtures made with ``tmp_path_factory`` once the module is done.

    pytest removes them at the end of the session only, and training fixtures write checkpoints of
    100-400 MB: kept for the whole session they add up to more than 10 GB, more than a CI machine's
    disk may have free. The folders of a module with a failure stay, as pytest keeps a failed test's."""
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    yield
    if request.module.__name__ in _MODULES_WITH_FAILURES:
        return
    for folder in set(base.iterdir()) - before:
        shutil.rmtree(folder, ignore_errors=True)
