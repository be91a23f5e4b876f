from setuptools import find_packages, setup

setup(
    name="rnnlab",
    version="0.1.0",
    description="A from-scratch NumPy/CuPy engine for studying how recurrent networks train",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["rnnlab", "rnnlab.*"]),
    package_data={"rnnlab.experiments": ["presets/*.toml"]},
    python_requires=">=3.10",
    install_requires=["numpy>=1.24", "scipy>=1.10", "matplotlib>=3.7", "tqdm>=4.60",
                      "threadpoolctl>=3.1"],
    extras_require={
        "gpu": ["cupy-cuda12x"],
        "gpu-cuda13": ["cupy-cuda13x"],
        "dask": ["dask[distributed]>=2023.1"],
        # pandas only to test that sweep results read with pandas.read_sql (not a dependency)
        "dev": ["pytest>=7", "hypothesis>=6.80", "pytest-timeout>=2.1", "networkx>=3",
                "dask[distributed]>=2023.1", "pandas>=1.5"],
        "tutorials": ["jupytext"],
        "compare": ["torch==2.13.0"],
    },
    entry_points={"console_scripts": ["rnnlab=rnnlab.cli:main"]},
)
