"""Package list for the `irshim.*` mapping in pyproject.toml.

setuptools cannot find packages under a renamed prefix by itself, so every
package below the three code folders is listed here as `irshim.<folder>...`.
"""

from setuptools import find_packages, setup

CODE_FOLDERS = ("ir", "kernels", "compat")

setup(
    packages=[
        f"irshim.{pkg}"
        for pkg in find_packages(include=[f"{folder}*" for folder in CODE_FOLDERS])
    ],
)
