/*
 * fuzz_prelude.h — a fuzz target is the whole program without its main(), as the unit tests,
 * the probe and the bench tools are: worker-controller.c itself is included, so this file never
 * repeats its include order (a copy of it drifted once), and a target can reach any module.
 * Fuzz targets build with clang + libFuzzer + ASan/UBSan against the glibc flavour of the
 * dependencies (libcurl and BearSSL linked; cJSON and libyaml compiled from the same verified
 * sources with the sanitizers, so their part of a finding is visible too).
 */
#define WC_NO_MAIN 1
#include "../../worker-controller.c"
