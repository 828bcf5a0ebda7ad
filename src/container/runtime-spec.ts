/**
 * The OCI runtime configuration (config.json of a runtime bundle) for a
 * container whose root is a tessera mount: the mount is the read-only root
 * (root.readonly), the image's config gives the command, environment,
 * working directory and user, and the few places a program expects to
 * write (/tmp, /run, /var/tmp) get a tmpfs when the image has them.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { badInput } from '../errors.js';

/** What an image says about how to run it (from the OCI image config it was imported from). */
export interface ContainerSettings {
  env?: string[];
  workingDir?: string;
  entrypoint?: string[];
  cmd?: string[];
  user?: string;
}

export interface RuntimeSpecOptions {
  rootfs: string;
  /** The command line; the image's entrypoint + cmd when empty. */
  args: readonly string[];
  settings: ContainerSettings;
  hostname: string;
  terminal: boolean;
  /** Share the host's network (default) or get an empty network namespace. */
  network: 'host' | 'none';
  /** The mount was asked for `suid` / `dev`: let setuid binaries and the image's device nodes work. */
  allowSetuid: boolean;
  allowDevices: boolean;
}

/**
 * runc remounts the root read-only with a bind remount that drops the
 * mount's nosuid and nodev, so inside the container they are enforced
 * here instead: no_new_privs stops setuid from raising privileges, and the
 * device cgroup allows only the devices every container needs.
 */
const STANDARD_DEVICES = [
  [1, 3], [1, 5], [1, 7], [1, 8], [1, 9], // null, zero, full, random, urandom
  [5, 0], [5, 1], [5, 2], // tty, console, ptmx
].map(([major, minor]) => ({ allow: true, type: 'c', major, minor, access: 'rwm' }));

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The capabilities Docker and podman give a container by default. */
const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

interface Mount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

/*
 * The rootfs is a tessera mount, and the process asking may be one the mount
 * waits on (tessera run --prefetch fetches chunks the daemon's reads wait
 * for). So every look at it here is asynchronous, and one at a time: a
 * synchronous one would stop this process's fetches until the daemon
 * answers, and many at once would hold every thread of libuv's pool in the
 * kernel (measured: a start stalled for the 10 s a claim was then waited
 * for; cache writes no longer use the pool, see disk-cache.ts).
 */

/** uid and gid of a user spec (name, uid, name:group, uid:gid), looked up in the image's own /etc/passwd and /etc/group. */
export async function resolveUser(rootfs: string, spec: string | undefined): Promise<{ uid: number; gid: number }> {
  if (spec === undefined || spec === '') return { uid: 0, gid: 0 };
  const [userPart, groupPart] = spec.split(':', 2) as [string, string | undefined];
  const read = (file: string): Promise<string[][]> =>
    fsp.readFile(path.join(rootfs, file), 'utf8').then(
      (text) => text.split('\n').map((line) => line.split(':')),
      () => [],
    );
  const passwd = await read('etc/passwd');
  const group = groupPart !== undefined && !/^\d+$/.test(groupPart) ? await read('etc/group') : [];
  const table = (file: string): string[][] => (file === 'etc/passwd' ? passwd : group);
  let uid: number;
  let gid: number | undefined;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    const entry = table('etc/passwd').find((fields) => fields[2] === userPart);
    if (entry?.[3] !== undefined && /^\d+$/.test(entry[3])) gid = Number(entry[3]);
  } else {
    const entry = table('etc/passwd').find((fields) => fields[0] === userPart);
    if (entry === undefined || !/^\d+$/.test(entry[2] ?? '')) throw badInput(`user ${JSON.stringify(userPart)} is not in the image's /etc/passwd`);
    uid = Number(entry[2]);
    gid = Number(entry[3]);
  }
  if (groupPart !== undefined) {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const entry = table('etc/group').find((fields) => fields[0] === groupPart);
      if (entry === undefined) throw badInput(`group ${JSON.stringify(groupPart)} is not in the image's /etc/group`);
      gid = Number(entry[2]);
    }
  }
  return { uid, gid: gid ?? uid };
}

export async function runtimeSpec(options: RuntimeSpecOptions): Promise<object> {
  const { rootfs, settings } = options;
  const args = options.args.length > 0 ? [...options.args] : [...(settings.entrypoint ?? []), ...(settings.cmd ?? [])];
  if (args.length === 0) throw badInput('no command to run: give one after --, or build the image with an entrypoint or cmd');
  const env = settings.env && settings.env.length > 0 ? [...settings.env] : [DEFAULT_PATH];
  if (!env.some((entry) => entry.startsWith('PATH='))) env.unshift(DEFAULT_PATH);
  if (options.terminal && !env.some((entry) => entry.startsWith('TERM='))) env.push('TERM=xterm');
  const inImage = ['/tmp', '/var/tmp', '/run', '/etc/resolv.conf', '/etc/hosts'];
  const present: boolean[] = [];
  for (const p of inImage) present.push(await fsp.access(path.join(rootfs, p)).then(() => true, () => false));
  const exists = (p: string): boolean => present[inImage.indexOf(p)] === true;
  const mounts: Mount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
  ];
  // The root is read-only: programs still need somewhere to write.
  for (const dir of ['/tmp', '/var/tmp', '/run']) {
    if (exists(dir)) mounts.push({ destination: dir, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] });
  }
  // With the host's network, its name resolution too.
  if (options.network === 'host') {
    for (const file of ['/etc/resolv.conf', '/etc/hosts']) {
      if (exists(file) && fs.existsSync(file)) mounts.push({ destination: file, type: 'bind', source: file, options: ['rbind', 'ro'] });
    }
  }
  const namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, ...(options.network === 'none' ? [{ type: 'network' }] : [])];
  const user = await resolveUser(rootfs, settings.user);
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: options.terminal,
      user,
      args,
      env,
      cwd: settings.workingDir && settings.workingDir !== '' ? settings.workingDir : '/',
      capabilities: Object.fromEntries(['bounding', 'effective', 'permitted'].map((set) => [set, DEFAULT_CAPABILITIES])),
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 20000, soft: 20000 }],
      noNewPrivileges: !options.allowSetuid,
    },
    root: { path: rootfs, readonly: true },
    hostname: options.hostname,
    mounts,
    linux: {
      namespaces,
      resources: {
        devices: options.allowDevices
          ? [{ allow: true, access: 'rwm' }]
          : [{ allow: false, access: 'rwm' }, ...STANDARD_DEVICES, { allow: true, type: 'c', major: 136, access: 'rwm' }],
      },
      maskedPaths: ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware'],
      readonlyPaths: ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}
