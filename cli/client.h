/*
 * client: the `hive` subcommands that talk to a running hive (SPEC §1):
 * down, status, send, restart, stop, start, pause, resume, interrupt,
 * reload, and logs (which reads the captured files). It finds the hive
 * through hive.yaml's `listen` (and its token), speaks plain blocking
 * HTTP/1.1 (and, for `send --wait`, a WebSocket) to the front door, and
 * prints for people. No event loop: a CLI may block.
 */
#ifndef HIVE_CLIENT_H
#define HIVE_CLIENT_H

/* Run subcommand ARGV[0] with its arguments; returns the exit code (0 ok,
 * 1 runtime failure such as no hive running, 2 usage, 3 `status`: a listed
 * bot is not running, 78 configuration). */
int client_main(int argc, char **argv);

#endif
