// Temporary: replaced by the full implementation.
export async function ensureServices(options: {
  databaseUrl: string;
  redisUrl: string;
  dataDir?: string;
  log?: (line: string) => void;
}): Promise<{ databaseUrl: string; redisUrl: string; started: string[] }> {
  return { databaseUrl: options.databaseUrl, redisUrl: options.redisUrl, started: [] };
}
