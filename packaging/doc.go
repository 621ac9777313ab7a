// Package packaging holds the files that the .deb and .rpm packages install
// (nfpm.yaml, sysusers.d entry, default config); its test checks that the
// shipped config loads.
package packaging
