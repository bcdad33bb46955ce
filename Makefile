GO ?= go
BIN := bin/meshward

.PHONY: all build test vet race bench fuzz clean testnet

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN) ./cmd/meshward

vet:
	$(GO) vet ./...

# The README's test command: static checks, then every test under the race detector.
test: vet
	$(GO) test -race -count=1 -timeout 30m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzOpen -fuzztime 30s ./intel

testnet:
	$(GO) run ./cmd/meshward testnet

clean:
	rm -rf bin
