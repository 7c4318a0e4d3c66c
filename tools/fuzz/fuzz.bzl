"""libFuzzer targets built with clang++-14 from genrules, run by run_fuzz.sh.

The default toolchain is g++, which has no libFuzzer, so fuzzers are not
cc_binary targets: genrules compile them with clang++-14 (Debian packages
clang-14 and libfuzzer-14-dev, installed by tools/install-deps.sh) under
AddressSanitizer and UndefinedBehaviorSanitizer. Being build actions, the
compiles are cached like any other; the tests only fuzz. See docs/security.md,
"Fuzzing and sanitizers".

  fuzz_library: sources compiled once with -fsanitize=fuzzer-no-link (coverage
      instrumentation without libFuzzer's main), archived for several fuzzers.
  fuzz_test: links a fuzzer (:x_fuzzer for :x_fuzz_test, buildable on its
      own for long runs) and declares the sh_test `name` that runs a fixed number of inputs
      from a fixed seed on a copy of the committed seed corpus.
"""

# -O1 -g: the usual fuzzing build (fast enough, readable stack traces). UBSan
# reports abort instead of continuing, so they count as crashes. $(GENDIR) is
# where generated headers (proto/mailbox/v1/mailbox.pb.h) live.
_CLANG = "clang++-14 -std=c++20 -g -O1 -fno-sanitize-recover=undefined -I. -I$(GENDIR)"

def _check_toolchain():
    # Fails the build, never skips, when the toolchain is missing.
    return ("command -v clang++-14 >/dev/null || " +
            "{ echo 'clang++-14 not found: install clang-14 and libfuzzer-14-dev " +
            "(tools/install-deps.sh)' >&2; exit 1; }; ")

def fuzz_library(name, srcs, hdrs = [], visibility = None):
    """An archive `name`.a of `srcs` instrumented for fuzzing."""
    ccs = [s for s in srcs if s.endswith(".cc")]
    native.genrule(
        name = name,
        srcs = srcs + hdrs,
        outs = [name + ".a"],
        cmd = _check_toolchain() + "objs=(); " +
              "".join([
                  ("o=$(@D)/%s_%d.o; " % (name, i)) +
                  _CLANG + " -fsanitize=fuzzer-no-link,address,undefined" +
                  (" -c $(location %s) -o $$o && objs+=($$o); " % s)
                  for i, s in enumerate(ccs)
              ]) +
              "ar rcs $@ $${objs[@]}",
        tags = ["fuzz"],
        visibility = visibility,
    )

def fuzz_test(
        name,
        fuzzer,
        corpus,
        runs,
        srcs = [],
        hdrs = [],
        libs = [],
        packages = [],
        max_len = 4096,
        seconds = 120,
        size = "medium",
        tags = []):
    """Declares the fuzzer binary and the sh_test `name` that runs it.

    Args:
      name: test name, ending in "_fuzz_test"; the binary's rule is
        :x_fuzzer for :x_fuzz_test, its file fuzzers/x_fuzzer.
      fuzzer: the .cc file that defines LLVMFuzzerTestOneInput.
      corpus: the seed corpus directory, relative to this package.
      runs: inputs to run from the fixed seed in the test.
      srcs: further .cc files compiled with it.
      hdrs: headers the sources include.
      libs: fuzz_library archives to link.
      packages: pkg-config names of the system libraries to link.
      max_len: longest input libFuzzer generates.
      seconds: upper bound on the fuzzing time, a safety net over `runs`.
      size: test size.
      tags: extra tags of the test; "fuzz" is always added (to the genrules
        too, so --build_tag_filters=-fuzz leaves them out).
    """
    if not name.endswith("_fuzz_test"):
        fail("fuzz_test names end in _fuzz_test")
    binary = name[:-len("_test")] + "er"
    ccs = [fuzzer] + [s for s in srcs if s.endswith(".cc")]
    native.genrule(
        name = binary,
        srcs = [fuzzer] + srcs + hdrs + libs,
        outs = ["fuzzers/" + binary],
        cmd = _check_toolchain() + _CLANG + " -fsanitize=fuzzer,address,undefined " +
              " ".join(["$(location %s)" % s for s in ccs]) + " " +
              " ".join(["$(location %s)" % l for l in libs]) +
              " -o $@" +
              (" $$(pkg-config --libs %s)" % " ".join(packages) if packages else ""),
        executable = True,
        tags = ["fuzz"],
        testonly = True,
    )
    native.sh_test(
        name = name,
        size = size,
        srcs = ["//tools/fuzz:run_fuzz.sh"],
        args = [
            "--binary=$(rootpath :%s)" % binary,
            "--corpus=%s/%s" % (native.package_name(), corpus),
            "--seconds=%d" % seconds,
            "--runs=%d" % runs,
            "--max-len=%d" % max_len,
        ],
        data = [":" + binary] + native.glob([corpus + "/*"]),
        tags = ["fuzz"] + tags,
    )
