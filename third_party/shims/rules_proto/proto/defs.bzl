"""Offline shim: re-exports Bazel 4.2.3's native proto rules under @rules_proto."""
proto_library = native.proto_library
proto_lang_toolchain = native.proto_lang_toolchain
