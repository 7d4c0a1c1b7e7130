# make test: everything CI runs, on a fresh machine (installs what is missing).
GO ?= go

# The library and the nested modules that keep their dependencies out of its
# go.mod: the load tool (bench/), its Centrifuge peer (bench/centrifuge/) and
# the browser tests (internal/browsertest).
MODULES := . bench bench/centrifuge internal/browsertest

# Every module is vetted and tested on its own go.mod, as CI and users see it,
# even when a local go.work exists.
export GOWORK := off

.PHONY: test deps vet tidy unit run fuzz bench

test: deps vet
	@status=0; for m in $(MODULES); do \
		echo "go test -race ./... ($$m)"; \
		(cd $$m && $(GO) test -race -count=1 -timeout 15m ./...) || status=1; \
	done; exit $$status

deps:
	./scripts/test-deps.sh

vet:
	@for m in $(MODULES); do \
		echo "go vet ./... ($$m)"; \
		(cd $$m && $(GO) vet ./...) || exit 1; \
		(cd $$m && $(GO) mod tidy -diff) || { echo "go.mod/go.sum of $$m are not tidy: run make tidy"; exit 1; }; \
	done
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

# After a change of the library's requirements, the nested modules need it too.
tidy:
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy) || exit 1; done

run:
	$(GO) run ./cmd/primus-server

# Short fuzzing sessions of the decoders (the seed corpora run in every test).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzClassify -fuzztime 30s ./internal/protocol
	$(GO) test -run '^$$' -fuzz FuzzReadMessage -fuzztime 30s ./internal/ws
	$(GO) test -run '^$$' -fuzz FuzzDecodeNodeMessage -fuzztime 30s .
	$(GO) test -run '^$$' -fuzz FuzzHandleNodeMessage -fuzztime 30s .

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
