const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const p2 = (n: number): string => String(n).padStart(2, '0');

/** RFC 5322 date-time in local time with its numeric zone. */
export function rfc5322Date(d = new Date()): string {
  const off = -d.getTimezoneOffset();
  const zone = `${off >= 0 ? '+' : '-'}${p2(Math.floor(Math.abs(off) / 60))}${p2(Math.abs(off) % 60)}`;
  return `${DAYS[d.getDay()]}, ${d.getDate()} ${MONTHS[d.getMonth()]} ${d.getFullYear()} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${zone}`;
}

/** Keeps client-supplied text printable so it cannot break the header. */
export function printable(s: string, max = 255): string {
  return s.replace(/[\x00-\x20\x7f()\\]/g, '?').slice(0, max);
}

export interface ReceivedInfo {
  helo: string;
  ip: string;
  hostname: string;
  /** RFC 3848 protocol name: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP... */
  protocol: string;
  id: string;
  tls?: string;
  recipient?: string;
  date?: Date;
}

/** The trace header stamped on every accepted message (RFC 5321 §4.4). */
export function receivedHeader(i: ReceivedInfo): string {
  const ipText = i.ip.includes(':') ? `IPv6:${i.ip}` : i.ip;
  let h = `Received: from ${printable(i.helo) || 'unknown'} ([${ipText}])\r\n\tby ${i.hostname} (moonpost) with ${i.protocol} id ${i.id}`;
  if (i.tls) h += `\r\n\t(${i.tls})`;
  if (i.recipient) h += `\r\n\tfor <${printable(i.recipient, 320)}>`;
  return `${h};\r\n\t${rfc5322Date(i.date)}\r\n`;
}
