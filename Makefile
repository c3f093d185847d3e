# vramzip build: libvramzip (static + shared), the vramzip CLI and the tests.
# CUDA sources (src/**/*.cu) are compiled when nvcc is found (CUDA=0 to skip).
#   make            build everything
#   make test       build and run the whole test suite (CPU)
#   make SAN=1 ...  the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-cuda  GPU tests (on a machine with an NVIDIA GPU)

CC      ?= cc
SAN     ?= 0
BUILD   ?= build
CUDA_HOME ?= /usr/local/cuda
NVCC    ?= $(firstword $(wildcard $(CUDA_HOME)/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
CUDA    ?= $(if $(NVCC),1,0)
CUDA_ARCH ?= -gencode=arch=compute_90,code=sm_90

PKGS      := libcjson libzstd libxxhash
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lcjson -lzstd -lxxhash)

OPT     := -O2
ifeq ($(SAN),1)
  BUILD := build-san
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
TEST_COMMON := $(sort $(wildcard tests/common/*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_COMMON_OBJ := $(TEST_COMMON:%.c=$(BUILD)/obj/%.o)
TESTS   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

ifeq ($(CUDA),1)
  CU_OBJ  := $(CU_SRC:%.cu=$(BUILD)/obj/%.cu.o)
  CFLAGS  += -DVZ_HAVE_CUDA=1
  LDLIBS  += -L$(CUDA_HOME)/lib64 -lcudart_static -lstdc++ -ldl -lrt -lpthread
  NVFLAGS := -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -fPIC -Iinclude -Isrc -DVZ_HAVE_CUDA=1 -lineinfo
else
  CU_OBJ  :=
endif

.PHONY: all test test-cuda clean fuzz
all: $(BUILD)/libvramzip.a $(BUILD)/libvramzip.so $(BUILD)/vramzip $(TESTS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

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

test: all
	BUILD=$(BUILD) bash tests/run.sh

test-cuda: all
	BUILD=$(BUILD) VZ_TEST_CUDA=1 bash tests/run.sh

clean:
	rm -rf build build-san

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
