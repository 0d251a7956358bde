"""pytest_test: one py_test per test file, run through tests/pytest_runner.py."""

def pytest_test(name, deps = [], **kwargs):
    native.py_test(
        name = name,
        srcs = ["pytest_runner.py", name + ".py"],
        main = "pytest_runner.py",
        args = ["$(location %s.py)" % name],
        deps = deps + [":test_lib", "//renderer"],
        # test_interpolate imports test_rasterize's scene helper.
        data = ["test_rasterize.py"],
        python_version = "PY3",
        srcs_version = "PY3",
        **kwargs
    )
