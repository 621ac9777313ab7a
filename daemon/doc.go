// Package daemon owns exlessd's core: the Unix-socket HTTP server, the check
// of who is calling, and the token broker (login, minting,
// caching). The Client that exlessctl uses to talk to it, and the JSON
// bodies of the socket API, are in package api (re-exported here).
//
// # Threat model
//
// What is protected: the Exceptionless user token, which is the key to a
// whole account, and the project client tokens minted with it. The daemon
// holds them in memory and in Vault; nothing else on the host should.
//
// Who may ask: only local processes that can connect to the socket, and of
// those only the ones a rule names. Access to the socket file (mode 0660,
// a dedicated group) is the first fence; the policy is the second, and the
// one that decides. A peer's identity is what the kernel reports for the
// connecting process (SO_PEERCRED, SO_PEERGROUPS), read once when the
// connection is accepted, before any byte of the request is read: a peer
// cannot claim to be someone else, and a connection whose credentials cannot
// be read is closed without being served. Nothing the peer sends (headers,
// query) is trusted for identity.
//
// What the rules rest on: uid and groups are the kernel's record of the
// connecting process. A unit comes from its cgroup, which only root or, for
// units under a user manager, that user's own manager can choose; that is
// why plain unit patterns never match user-manager units. An executable rule
// hashes the program through /proc/PID/exe, so a file replaced at the same
// path is not mistaken for the approved one, and a deleted binary never
// matches. The process is pinned (pidfd or /proc start time) and checked
// again after /proc is read, so a pid reused by another process is refused.
//
// What they cannot rest on: a process may pass its connected socket to
// another, or exec a different program after connecting (same pid, same
// start time). Anyone able to run code as an allowed uid can therefore get
// what that uid is granted; unit and exe rules narrow the set of allowed
// callers, they do not defend against the allowed uid itself. Give each
// consumer its own uid or unit, and grant the user token to as few as
// possible.
//
// What a peer learns: the tokens its rules grant, and on refusal the identity
// the daemon saw and that no rule grants the request. Vault and Exceptionless
// errors stay in the journal; peers get a short reason and a code.
//
// Out of scope: root on the host (it can read the daemon's memory), and a
// process that legitimately receives a token and then leaks it. Requests
// carrying Origin or Referer are refused, so a browser or an SSRF-prone local
// web service cannot be turned against the socket, and the Host must be
// "localhost" or "exlessd".
//
// Secrets never appear in logs or error texts: tokens are
// exceptionless.Token values, which redact themselves, and upstream URLs
// that embed token ids are redacted by the API client.
package daemon
