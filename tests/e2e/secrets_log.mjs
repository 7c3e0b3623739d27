// Records the secrets an e2e peer used, so secrets_grep.py can prove none reached a log:
// recordSecret(kind, value) appends `kind<TAB>value` to the file named by $E2E_SECRETS
// (lib.sh sets it in the run's log directory; the grep never scans that file). Without the
// variable it does nothing.
import fs from 'node:fs';

export function recordSecret(kind, value) {
  const file = process.env.E2E_SECRETS;
  if (!file || !value) return;
  fs.appendFileSync(file, `${kind}\t${String(value).split(/\s+/).join(' ')}\n`);
}
