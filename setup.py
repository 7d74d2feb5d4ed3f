"""Package discovery only (metadata lives in pyproject.toml).

The top-level folders `kernels/` and `streaming/` install as `frieren_rt.kernels` and `frieren_rt.streaming`
(see `package-dir` in pyproject.toml); their subpackages are found here so that the mapping holds for them too.
"""

from setuptools import find_packages, setup


def _mapped(folder: str, namespace: str) -> list[str]:
    return [namespace] + [f"{namespace}.{sub}" for sub in find_packages(folder)]


setup(
    packages=find_packages(include=["frieren_rt", "frieren_rt.*"])
    + _mapped("kernels", "frieren_rt.kernels")
    + _mapped("streaming", "frieren_rt.streaming"),
    package_data={"frieren_rt": ["weights/*.safetensors", "weights/*.json", "configs/*.json", "eval/*.safetensors"],
                  "frieren_rt.streaming": ["static/*"]},
)
