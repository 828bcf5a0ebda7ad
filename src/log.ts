/**
 * Log lines for long-running processes (the mount daemon): one line per
 * event, timestamped, saying what failed and where. Credentials never go
 * through here.
 */
export type LogLevel = 'info' | 'warn' | 'error';

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export function streamLogger(write: (line: string) => void, prefix = ''): Logger {
  const emit = (level: LogLevel, message: string): void => {
    write(`${new Date().toISOString()} ${level.padEnd(5)} ${prefix}${message}\n`);
  };
  return {
    info: (message) => emit('info', message),
    warn: (message) => emit('warn', message),
    error: (message) => emit('error', message),
  };
}

export const stderrLogger = (prefix = ''): Logger => streamLogger((line) => process.stderr.write(line), prefix);
