# make test: everything CI runs, on a fresh machine (installs what is missing).
GO ?= go

.PHONY: test deps vet unit run fuzz bench

test: deps vet
	$(GO) test -race -count=1 -timeout 15m ./...

deps:
	./scripts/test-deps.sh

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

run:
	$(GO) run ./cmd/primus-server

# Short fuzzing sessions of the decoders (the seed corpora run in every test).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzClassify -fuzztime 30s ./internal/protocol
	$(GO) test -run '^$$' -fuzz FuzzReadMessage -fuzztime 30s ./internal/ws

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
