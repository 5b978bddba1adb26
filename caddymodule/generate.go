package caddymodule

// The generated sections of docs/configuration.md (the Caddyfile syntax,
// the field reference, the JSON example) and docs/operations.md (the
// metrics table) come from this package's source; TestConfigurationDoc
// fails until they are regenerated after a change.
//go:generate go run ../internal/cmd/configdoc -src . -docs ../docs
