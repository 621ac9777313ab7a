// Package peer identifies the process at the other end of a Unix socket
// connection. It owns that reading and nothing else; deciding what a peer
// may do is the policy's job.
//
// # What the kernel vouches for
//
// FromConn reads SO_PEERCRED (pid, effective uid and gid) and SO_PEERGROUPS
// (supplementary groups). The kernel records them when the peer calls
// connect, so they describe the process that opened the connection, not
// whoever writes to it later, and the peer cannot forge them. That is why
// the daemon reads them once, at accept, and never trusts anything the peer
// says about itself.
//
// # Attestation
//
// Attestor.Attest adds what /proc says about that process: its start time
// (only without a pidfd, which needs no start time to pin it), its systemd
// unit (from /proc/<pid>/cgroup; see ParseCgroup for the exact
// string policy globs match) and, when asked, its executable: the sha256 of
// the file opened through /proc/<pid>/exe and, for path rules, that link's
// target (ExeHash and ExePathHash).
//
// A pid is a weak name: the peer can exit and another process take its pid
// while /proc is being read. So Attest pins the process first, with a pidfd
// from SO_PEERPIDFD (Linux 6.5+), which names the very process that
// connected, or else by an open /proc/<pid> directory and the start time.
// Without a pidfd every file is read through that directory, which stops
// working, rather than moving to a successor, once its process is gone.
// After the last read the pin is checked again. The pidfd must not poll as
// exited (since Linux 6.16 a pidfd is handed out even for a peer that had
// already exited, so holding one proves nothing); a process that has not
// exited by then held its pid throughout, so every file read by path was
// its own. Without a pidfd, the start time must be unchanged, and the
// process must not be a zombie and must still run under the uid and gid it
// connected with. Otherwise Attest returns ErrPeerGone and the connection
// must not be served.
//
// # What attestation does not prove
//
// Everything describes the process that connected, as it is when attested;
// nothing binds the connection to the code that uses it. A process can
// pass its connected socket to another (SCM_RIGHTS, or a child it forks),
// or exec another program after connecting, keeping its pid and start
// time. So an attacker running as a uid can connect, hand the socket to
// its own code, and exec a binary the policy allows; it can also ptrace or
// LD_PRELOAD an allowed binary of its own uid. Unit and exe rules tell
// apart well-behaved programs of one uid; they are no boundary against
// hostile code running as that uid. The boundary between users is the uid
// and gid, which the kernel vouches for.
//
// What narrows this: the executable is hashed through /proc/<pid>/exe, so
// the hash is of the file the process runs, not of whatever is at its path
// now; a binary deleted or replaced since the process started never
// matches (ExeDeleted, from the link count, and for path rules from the
// link's "(deleted)" mark too); for path rules the link is read again after
// hashing, so a name moved meanwhile does not match; and the pin is checked after hashing, so
// the allowed program must really be running, as the connecting process,
// until then. Hashes are cached by (device, inode, size, mtime, ctime) and
// only for files unchanged for a few seconds, since file times come from a
// coarse clock. Peers cannot make the daemon read without bound: a file
// over MaxExeSize is refused from its fstat, at most a few files are
// hashed at once (LimitHashing), and a peer that waits too long for a turn
// is attested without its executable.
//
// What remains, besides the above:
//
//   - Without a pidfd (kernels before 6.5), a pid reused before Attest
//     opened /proc/<pid> by a process of the same uid and gid is taken for
//     the peer. That needs the peer to exit and the pid space to wrap
//     between connect and accept.
//   - The unit comes from the cgroup, which only root and the owner of a
//     delegated subtree can change. A unit that delegates (Delegate=yes,
//     containers, user managers) owns everything below it: a process there
//     is attributed to that unit, or for user managers to a unit named
//     under "user@UID.service/", which any process of that user can choose.
//     Cgroup names may contain newlines, which forge lines in the cgroup
//     file; Attest refuses a file whose hierarchies differ from the
//     daemon's own.
//   - Reading another user's executable, or a non-dumpable process's,
//     needs CAP_SYS_PTRACE. Without it Identity.ExeErr says so and exe
//     rules do not match; the rest of the attestation stands.
//   - /proc must be the procfs of the daemon's pid namespace (Attest checks
//     /proc/self), not mounted with hidepid= (peers would look gone), and
//     the daemon must run in the host's cgroup namespace, or peers' cgroup
//     paths are relative to another root (those outside it name no unit).
package peer
