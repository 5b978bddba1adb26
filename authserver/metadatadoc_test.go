package authserver

import (
	"context"
	"strings"
	"testing"
)

// TestMetadataDocumentHostMustBeASCII refuses client IDs on hosts written
// in Unicode before anything is fetched: the consent page names the client
// by its host, where a look-alike of another application's host (a
// Cyrillic "а" in claude.ai) could pass for it. The xn-- form is shown as
// it is, and so cannot.
func TestMetadataDocumentHostMustBeASCII(t *testing.T) {
	f := NewMetadataDocumentFetcher(MetadataDocumentOptions{})
	for _, id := range []string{
		"https://cl\u0430ude.ai/client.json",
		"https://cl%D0%B0ude.ai/client.json",
	} {
		_, err := f.Client(context.Background(), id)
		if err == nil || !strings.Contains(err.Error(), "ASCII") {
			t.Errorf("client ID %q: %v; want it refused for its Unicode host", id, err)
		}
	}
}

func TestMetadataDocumentClientIDTooLong(t *testing.T) {
	f := NewMetadataDocumentFetcher(MetadataDocumentOptions{AllowPrivate: true})
	long := "https://example.test/" + strings.Repeat("a", maxClientIDURLBytes)
	if _, err := f.Client(t.Context(), long); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("a %d-byte client ID URL: %v", len(long), err)
	}
}
