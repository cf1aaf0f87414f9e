/**
 * Loaded into every harness child (node --import, before src/main.ts): the child ends when the
 * process that started it is gone. A test that timed out while its gateway child was starting
 * never gets the handle to kill it; without this, that child would live on after the run and
 * could take work (a relay, a worker) from a later run on the same Redis.
 */
const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid) process.kill(process.pid, 'SIGKILL');
}, 1_000).unref();
