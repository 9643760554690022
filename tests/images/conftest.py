"""Fixtures of the image tests: the images built once per session, and containers that always go away.

Everything that needs a container engine is skipped, with the reason, only when podman or buildah is
missing (`make test` installs them through `make image-deps`). The session build runs every step of
both Dockerfiles (`NO_CACHE=1`: no layer comes from a cache) under test-only tags, removed at the end;
the stand-in base image is built too when missing (its debootstrap tarball is cached under .tools/).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

HERE = os.path.dirname(__file__)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from images_helpers import (  # noqa: E402
    MISSING,
    ROOT,
    SERVICES,
    TEST_TAG,
    BuiltImages,
    engine_env,
    podman,
)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImages]:
    if MISSING:
        pytest.skip(f"{' and '.join(MISSING)} not installed (make image-deps installs them)")
    reuse = os.environ.get("IMAGE_TESTS_REUSE_TAG")
    if reuse:  # iterating on the tests: use images built before (e.g. `make images`: dev), build nothing
        tags = {service: f"localhost/secure-agent/{service}:{reuse}" for service in SERVICES}
        logs = {
            service: (ROOT / ".tools" / "images" / "logs" / f"build-{service}.log").read_text()
            for service in SERVICES
        }
        yield BuiltImages(tags=tags, logs=logs, seconds={}, base="docker.io/library/python:3.12-slim")
        return
    logs_dir = tmp_path_factory.mktemp("build-logs")
    env = {**engine_env(), "TAG": TEST_TAG, "NO_CACHE": "1", "BUILD_LOG_DIR": str(logs_dir)}
    tags = {service: f"localhost/secure-agent/{service}:{TEST_TAG}" for service in SERVICES}
    seconds: dict[str, float] = {}
    try:
        start = time.monotonic()
        base = subprocess.run(
            [str(ROOT / "images" / "base" / "build.sh")], env=env, capture_output=True, text=True, timeout=600
        )
        assert base.returncode == 0, base.stdout + base.stderr
        seconds["base"] = time.monotonic() - start
        for service in SERVICES:
            start = time.monotonic()
            proc = subprocess.run(
                [str(ROOT / "scripts" / "build-images.sh"), service],
                env=env, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            seconds[service] = time.monotonic() - start
            assert proc.returncode == 0, f"{service} build failed:\n{proc.stdout}\n{proc.stderr}"
        logs = {service: (logs_dir / f"build-{service}.log").read_text() for service in SERVICES}
        yield BuiltImages(tags=tags, logs=logs, seconds=seconds, base="docker.io/library/python:3.12-slim")
    finally:
        for tag in tags.values():
            subprocess.run(
                ["buildah", "rmi", "--force", tag], env=engine_env(), capture_output=True, timeout=120
            )


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Names of containers a test started; each is removed (with its anonymous volumes) afterwards."""
    started: list[str] = []
    yield started
    for name in started:
        podman("rm", "--force", "--volumes", "--time", "0", name, check=False, timeout=60)
