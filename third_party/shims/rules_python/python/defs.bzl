"""Offline shim: re-exports Bazel 4.2.3's native Python rules under @rules_python."""
py_binary = native.py_binary
py_library = native.py_library
py_runtime = native.py_runtime
py_runtime_pair = native.py_runtime_pair
py_test = native.py_test
