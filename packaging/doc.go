// Package packaging builds the exless .deb and .rpm packages with nfpm:
// nfpm.yaml lists what they install (binaries built with cgo, the systemd
// units, sysusers.d and tmpfiles.d entries, the example config as a
// noreplace config file, maintainer scripts under scripts/), and Build
// makes them. `make package` runs it through ./packaging/build.
//
// Its tests inspect both packages with dpkg-deb and rpm, and boot the .deb
// under a real systemd in systemd-nspawn (systemd_test.go).
package packaging
