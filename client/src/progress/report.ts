import { SmartcopyError } from '@smartcopy/protocol';
import type { Config } from '../config.js';
import type { Plan } from '../plan/plan.js';
import type { Accounting, RunEvents } from './accounting.js';

/** Totals and the start event once the plan is known; skipped and unsupported are counted here. */
export function reportPlanned(plan: Plan, acct: Accounting, events: RunEvents, cfg: Config, source: string, destination: string): void {
  const files = plan.files.length + plan.symlinks.length + plan.skipped.length + plan.unsupported.length;
  acct.filesTotal = files + acct.filesFailed;
  acct.bytesTotal = [...plan.files, ...plan.skipped].reduce((n, it) => n + it.entry.size, 0);
  events.start({ source, destination, filesTotal: acct.filesTotal, bytesTotal: acct.bytesTotal, dryRun: cfg.dryRun });
  for (const it of plan.skipped) {
    acct.filesSkipped++;
    acct.bytesSkipped += it.entry.size;
    events.file({ path: it.display, action: 'skipped', bytes: it.entry.size });
  }
  for (const it of plan.unsupported) {
    acct.filesSkipped++;
    events.error(new SmartcopyError('SC_ERR_UNSUPPORTED', `skipping ${it.display}: not a regular file, directory or symlink (device, fifo or socket)`, { path: it.display }));
  }
}

/** --dry-run: report what the plan would do, as if it had been done. */
export function reportDryRun(plan: Plan, acct: Accounting, events: RunEvents): void {
  for (const d of plan.deletes) {
    if (d.typeChange) continue;
    acct.deleted++;
    events.file({ path: d.display, action: 'deleted', bytes: 0 });
  }
  for (const it of plan.mkdirs) events.file({ path: it.display, action: 'dir', bytes: 0 });
  for (const it of plan.files) {
    acct.filesCopied++;
    acct.bytesDone += it.entry.size;
    events.file({ path: it.display, action: 'copied', bytes: it.entry.size });
  }
  for (const it of plan.symlinks) {
    acct.filesCopied++;
    events.file({ path: it.display, action: 'linked', bytes: 0 });
  }
}

/** Source entries that could not be listed count as failed files. */
export function reportScanErrors(errors: ReadonlyArray<{ path: Buffer; code: string; message: string }>, fallback: string, acct: Accounting, events: RunEvents): void {
  for (const e of errors) {
    const code = e.code === 'ENOENT' ? 'SC_ERR_VANISHED' : e.code === 'EACCES' ? 'SC_ERR_PERMISSION' : 'SC_ERR_IO';
    const where = e.path.toString('utf8') || fallback;
    const err = new SmartcopyError(code, `${where}: ${e.message}`, { path: where });
    acct.filesFailed++;
    acct.errors.push(err);
    events.error(err);
  }
}
