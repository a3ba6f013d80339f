/* The agent ports of a VM sandbox, shared by the host processes that
 * talk to its guest.
 *
 * The guest's agent serves every virtio-serial port named
 * "sandlot.agent.<n>" as a byte stream of its own (stream mode, see
 * core/proto.h). On the host, port n is the QEMU socket chardev
 * <dir>/agent-<n>.sock, which takes one connection at a time: a second
 * client would wait in its backlog, and the next ones fail with EAGAIN.
 * So a host process owns port n while it holds the exclusive flock on
 * <dir>/agent-<n>.lock, and connects only then. Both agent clients
 * (agent_client.h) take ports through these calls. */
#ifndef SANDLOT_AGENT_PORTS_H
#define SANDLOT_AGENT_PORTS_H

#include <stddef.h>

#include "error.h"

/* How often a client that found every port taken tries them again. */
#define SL_AGENT_PORT_RETRY_MS 10

/* The number of ports in `dir`: agent-0.sock, agent-1.sock, ... as far
 * as they exist (0 when there is none). */
unsigned sl_agent_ports_count(const char *dir);

/* Write <dir>/agent-<port>.sock to `buf`; -ENAMETOOLONG when it does not
 * fit. */
int sl_agent_port_socket(const char *dir, unsigned port, char *buf, size_t size, sl_error *err);

/* Take the first free one of the `count` ports without waiting. Returns
 * the lock fd (close it after the connection to release the port) and
 * sets *port, or -EWOULDBLOCK (err untouched) when every port is held,
 * or another negative errno with `err` filled. */
int sl_agent_port_try(const char *dir, unsigned count, unsigned *port, sl_error *err);

/* sl_agent_port_try() every SL_AGENT_PORT_RETRY_MS until a port is free
 * or `timeout_ms` has passed; then EBUSY naming the holders' count. */
int sl_agent_port_take(const char *dir, unsigned count, int timeout_ms, unsigned *port,
                       sl_error *err);

#endif
