# keeper + schism. `make run` is the main job on its default; `make test` is the test suite.
SHELL := /bin/bash
CARGO ?= cargo
SCHISM := target/debug/schism

STATIC_TARGET := x86_64-unknown-linux-gnu

.PHONY: all build build-bugs build-static run test lint fmt gate clean-leftovers

all: build

build:
	$(CARGO) build --workspace --all-targets

# keeperd with fault injection compiled in (issue 6); a separate binary so that the keeperd users
# deploy never contains it. Likewise schism-bugs: `schism sim --server-bug`, for the gate's
# simulated column.
# Both through `--workspace`, so that the dependencies resolve to the features `make build` gave
# them and are not compiled again.
build-bugs:
	$(CARGO) build --workspace --features keeper/bugs,schism/bugs --bin keeperd --bin schism
	install -m 755 target/debug/keeperd target/debug/keeperd-bugs
	install -m 755 target/debug/schism target/debug/schism-bugs
	$(CARGO) build --workspace --bin keeperd --bin schism

# keeperd linked statically, for the docker backend's `FROM scratch` image (a dynamic binary has
# no loader there). `schism test --backend docker` picks it up from this path.
build-static:
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release --target $(STATIC_TARGET) -p keeper --bin keeperd

# A short real test: a 5-node keeper ensemble, register workload, partitions + kills + pauses,
# about a minute; ends with the verdict and the path of the report.
run: build
	$(SCHISM) test --workload register --nodes 5 --nemesis partition,kill,pause --time-limit 60s

# Unit, property, simulation, model-checking and real-process tests of every crate; then the
# simulator with injected bugs, and real `schism test` runs of every workload (netns + docker).
test: build build-bugs
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=2
	$(CARGO) test --workspace --features keeper/bugs,schism/bugs --test sim --test tree_model --test sim_seeds --test sim_cli
	$(CARGO) test --workspace --test e2e -- --include-ignored --test-threads=1

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# The catch matrix. `make gate GATE_ARGS=--short` runs the bug rows and a short set of
# correct-server rows (every workload and fault kind once), for CI.
gate: build build-bugs
	$(SCHISM) gate $(GATE_ARGS)

clean-leftovers: build
	$(SCHISM) clean
