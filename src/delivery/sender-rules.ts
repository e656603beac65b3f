/**
 * A sender's domain filter rules (R1): which queued recipients it is offered. Each rule is a
 * domain pattern with `*` and `?` wildcards (`*.example.com`, `example.?om`), a negated
 * pattern (`!spam.test`), or a size condition on the message (`size>1000000`,
 * `size<=50000`). A recipient is selected when its domain matches some positive pattern
 * (none given means every domain), no negated one, and the message meets every size
 * condition.
 */
export interface SenderRules {
  include: RegExp[];
  exclude: RegExp[];
  size: { op: '<' | '<=' | '>' | '>='; n: number }[];
}

function wildcard(p: string): RegExp {
  const body = p.toLowerCase().replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/** Parses rules; throws with the offending rule named. */
export function parseSenderRules(rules: string[]): SenderRules {
  const out: SenderRules = { include: [], exclude: [], size: [] };
  for (const raw of rules) {
    const r = raw.trim();
    const size = /^size\s*(<=|>=|<|>)\s*(\d+)$/i.exec(r);
    if (size) out.size.push({ op: size[1] as SenderRules['size'][number]['op'], n: Number(size[2]) });
    else if (r.startsWith('!') && r.length > 1) out.exclude.push(wildcard(r.slice(1)));
    else if (/^[A-Za-z0-9*?.\-[\]:]+$/.test(r)) out.include.push(wildcard(r));
    else throw new Error(`bad domain filter rule "${raw}" (expected a domain pattern, !pattern or size>N)`);
  }
  return out;
}

export function sizeAllowed(rules: SenderRules, size: number): boolean {
  return rules.size.every(({ op, n }) => (op === '<' ? size < n : op === '<=' ? size <= n : op === '>' ? size > n : size >= n));
}

export function selects(rules: SenderRules, recipient: string, size: number): boolean {
  const domain = recipient.slice(recipient.lastIndexOf('@') + 1).toLowerCase();
  if (!sizeAllowed(rules, size)) return false;
  if (rules.exclude.some((re) => re.test(domain))) return false;
  return rules.include.length === 0 || rules.include.some((re) => re.test(domain));
}
