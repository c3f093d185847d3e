# vramzip build: libvramzip (static + shared), the vramzip CLI and the tests.
# CUDA sources (src/**/*.cu) are compiled when nvcc is found (CUDA=0 to skip).
#   make            build everything
#   make test       build and run the whole test suite (CPU)
#   make SAN=1 ...  the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-cuda  GPU tests (on a machine with an NVIDIA GPU)

CC      ?= cc
SAN     ?= 0
CUDA_HOME ?= /usr/local/cuda
NVCC    ?= $(firstword $(wildcard $(CUDA_HOME)/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
CUDA    ?= $(if $(NVCC),1,0)
CUDA_ARCH ?= -gencode=arch=compute_90,code=sm_90
# gemm.cu (the prefill's fused GEMM, path B) uses sm_90a's wgmma where CUDA_ARCH names sm_90
GEMM_ARCH ?= $(subst code=sm_90,code=sm_90a,$(subst arch=compute_90,arch=compute_90a,$(CUDA_ARCH)))
# CUDA_TRACE=1: a diagnostic build whose decode kernels stamp %globaltimer
# (src/backend/cuda/trace.cuh; the timeline prints with VZ_CUDA_PROFILE=1).
# Use its own BUILD directory: the define is not in the objects' dependencies.
CUDA_TRACE ?= 0

PKGS      := libcjson libzstd libxxhash libpcre2-8 libutf8proc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lcjson -lzstd -lxxhash -lpcre2-8 -lutf8proc)

SAN_BUILD ?= build-san
OPT     := -O2
ifneq ($(SAN),1)
  BUILD ?= build
else
  BUILD ?= $(SAN_BUILD)
  OPT   := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -fPIC -fopenmp -ffp-contract=off \
           -D_DEFAULT_SOURCE -Iinclude -Isrc $(PKG_CFLAGS) -MMD -MP
LDLIBS  += $(PKG_LIBS) -lm -fopenmp

LIB_SRC := $(sort $(shell find src -name '*.c'))
CU_SRC  := $(sort $(shell find src -name '*.cu'))
CLI_SRC := $(sort $(wildcard cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_COMMON := $(sort $(wildcard tests/common/*.c) $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZERS  := $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_COMMON_OBJ := $(TEST_COMMON:%.c=$(BUILD)/obj/%.o)
TESTS   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

ifeq ($(CUDA),1)
  CU_OBJ  := $(CU_SRC:%.cu=$(BUILD)/obj/%.cu.o)
  CFLAGS  += -DVZ_HAVE_CUDA=1
  LDLIBS  += -L$(CUDA_HOME)/lib64 -lcudart_static -lstdc++ -ldl -lrt -lpthread
  NVFLAGS := -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -fPIC -Iinclude -Isrc -DVZ_HAVE_CUDA=1 -lineinfo
  ifeq ($(CUDA_TRACE),1)
    NVFLAGS += -DVZ_CUDA_TRACE
  endif
else
  CU_OBJ  :=
endif

.PHONY: all test test-cuda clean fuzz fuzz-smoke bench
all: $(BUILD)/libvramzip.a $(BUILD)/libvramzip.so $(BUILD)/vramzip $(TESTS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/src/backend/cuda/gemm.cu.o: NVFLAGS := $(subst $(CUDA_ARCH),$(GEMM_ARCH),$(NVFLAGS))

$(BUILD)/libvramzip.a: $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libvramzip.so: $(LIB_OBJ) $(CU_OBJ)
	$(CC) -shared -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/vramzip: $(CLI_OBJ) $(BUILD)/libvramzip.a
	$(CC) -o $@ $(CLI_OBJ) $(BUILD)/libvramzip.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_COMMON_OBJ) $(BUILD)/libvramzip.a
	@mkdir -p $(dir $@)
	$(CC) -o $@ $< $(TEST_COMMON_OBJ) $(BUILD)/libvramzip.a $(LDFLAGS) $(LDLIBS) -lcmocka

# GPU microbenchmark of the fused decode+matvec (CUDA=1 builds; run by bench/gpu_ab.sh).
$(BUILD)/bench/matvec_bench: bench/matvec_bench.cu bench/bench_util.cuh $(BUILD)/libvramzip.a
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -o $@ $< $(BUILD)/libvramzip.a $(PKG_LIBS) -lm -Xcompiler -fopenmp

# GPU microbenchmark of the prefill GEMMs (`prefill_bench 512` on the device); cuBLAS is dlopen'ed at run time.
$(BUILD)/bench/prefill_bench: bench/prefill_bench.cu bench/bench_util.cuh $(BUILD)/libvramzip.a
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -o $@ $< $(BUILD)/libvramzip.a $(PKG_LIBS) -lm -ldl -Xcompiler -fopenmp

# GPU microbenchmark of the hand-off between dependent launches (PDL wait against a polled counter).
$(BUILD)/bench/handoff_bench: bench/handoff_bench.cu bench/bench_util.cuh
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -o $@ $<

HAVE_CLANG := $(shell command -v clang >/dev/null 2>&1 && echo 1)
# `make test` runs every test twice: the normal build, and an ASan+UBSan
# build (build-san, CPU only), plus a short run of each fuzzer; one closing line.
ifeq ($(SAN),0)
test: all san-build $(if $(HAVE_CLANG),fuzz)
	BUILD=$(BUILD) VZ_SAN_BUILD=$(SAN_BUILD) bash tests/run.sh
else
test: all
	BUILD=$(BUILD) bash tests/run.sh
endif

san-build:
	$(MAKE) SAN=1 CUDA=0 BUILD=$(SAN_BUILD) all

# libFuzzer targets: tests/fuzz/fuzz_<surface>.c defines
#   int vz_fuzz_<surface>(const uint8_t *data, size_t size);
# seeds live in tests/fuzz/corpus/<surface>/. The same functions are linked
# into the test binaries so saved crashes replay in `make test`.
fuzz: $(FUZZERS)

build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/libfuzzer_main.c $(LIB_SRC)
	@mkdir -p $(dir $@)
	clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -ffp-contract=off -D_DEFAULT_SOURCE -Iinclude -Isrc $(PKG_CFLAGS) \
	  -DVZ_FUZZ_FN=vz_fuzz_$* -o $@ $< tests/fuzz/libfuzzer_main.c $(LIB_SRC) $(PKG_LIBS) -lm -fopenmp

# A short fuzz run of every target (FUZZ_SECONDS each) on a scratch copy of its corpus.
FUZZ_SECONDS ?= 10
fuzz-smoke: fuzz
	@set -e; for f in $(FUZZERS); do n=$${f#build-fuzz/fuzz_}; d=$$(mktemp -d); \
	  cp -r tests/fuzz/corpus/$$n/. $$d/ 2>/dev/null || true; \
	  echo "fuzz $$n ($(FUZZ_SECONDS)s)"; $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 $$d >$$d.log 2>&1 || \
	  { tail -40 $$d.log; echo "fuzz $$n FAILED"; rm -rf $$d; exit 1; }; rm -rf $$d $$d.log; done

# Benchmarks: bench/<name>.c -> $(BUILD)/bench/<name>, linked with the library.
BENCH_SRC := $(sort $(wildcard bench/*.c))
bench: $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libvramzip.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libvramzip.a $(LDFLAGS) $(LDLIBS)

test-cuda: all
	BUILD=$(BUILD) VZ_TEST_CUDA=1 bash tests/run.sh

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
