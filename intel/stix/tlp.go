package stix

import (
	"fmt"
	"strings"
)

// Traffic Light Protocol levels (TLP 2.0 names).
const (
	TLPClear       = "clear"
	TLPGreen       = "green"
	TLPAmber       = "amber"
	TLPAmberStrict = "amber+strict"
	TLPRed         = "red"
)

// The standard TLP marking-definition ids: TLP 2.0 (OASIS
// cti-stix-common-objects, extension-definition-specifications/tlp-2.0)
// and TLP 1.0 (STIX 2.1 section 7.2.1.4).
var (
	tlp2IDs = map[string]string{
		TLPClear:       "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
		TLPGreen:       "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
		TLPAmber:       "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
		TLPAmberStrict: "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
		TLPRed:         "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
	}
	tlp1IDs = map[string]string{
		"white": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
		"green": "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
		"amber": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
		"red":   "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
	}
	// tlpByID maps every standard id to its TLP 2.0 level.
	tlpByID = func() map[string]string {
		m := make(map[string]string)
		for l, id := range tlp2IDs {
			m[id] = l
		}
		for l, id := range tlp1IDs {
			if l == "white" {
				l = TLPClear
			}
			m[id] = l
		}
		return m
	}()
)

// tlpExtension is the TLP 2.0 extension definition.
const tlpExtension = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"

// TLPMarkingID is the TLP 2.0 marking-definition id of a level.
func TLPMarkingID(level string) (string, error) {
	id, ok := tlp2IDs[strings.ToLower(level)]
	if !ok {
		return "", fmt.Errorf("unknown TLP level %q (want clear, green, amber, amber+strict or red)", level)
	}
	return id, nil
}

// tlpOf is the most restrictive TLP level among refs, or "".
func tlpOf(refs []string) string {
	rank := map[string]int{TLPClear: 1, TLPGreen: 2, TLPAmber: 3, TLPAmberStrict: 4, TLPRed: 5}
	best := ""
	for _, r := range refs {
		if l, ok := tlpByID[r]; ok && rank[l] > rank[best] {
			best = l
		}
	}
	return best
}

// tlpMarking is the TLP 2.0 marking-definition object of a level.
func tlpMarking(level string) map[string]any {
	name := "TLP:" + strings.ToUpper(level)
	return map[string]any{
		"type":         "marking-definition",
		"spec_version": "2.1",
		"id":           tlp2IDs[level],
		"created":      "2022-10-01T00:00:00.000Z",
		"name":         name,
		"extensions": map[string]any{
			tlpExtension: map[string]any{"extension_type": "property-extension", "tlp_2_0": level},
		},
	}
}
