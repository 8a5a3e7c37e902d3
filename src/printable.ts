/**
 * Text that a node controls (tar entry names, stderr, the warnings built from
 * them) made safe to store and to print: control characters escaped, so it
 * cannot move the cursor, clear the screen or retitle the terminal of an
 * operator running `bysu status`, and cut to a byte budget, so it cannot swell
 * a manifest, a Redis entry or a status line.
 */

/**
 * C0 controls (ESC among them), DEL, C1 controls (U+009B is a one-character
 * CSI for a UTF-8 terminal), the Unicode line separators and the bidi
 * overrides and isolates (which reorder what a line appears to say).
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** The same, but newline and tab are left alone (multi-line stderr). */
const UNSAFE_BUT_LINES = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function escapeOne(character: string): string {
  // JSON's own escapes where it has them (\n, \t, \u001b), so that a quoted name stays a valid JSON string.
  const json = JSON.stringify(character).slice(1, -1);
  return json.length > 1 ? json : `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * Given text from a node, return it with every control character written as a
 * JSON-style escape (`\u001b`, `\n`); with `keepLineBreaks`, newlines and tabs
 * are kept as they are.
 */
export function escapeControls(text: string, options: { keepLineBreaks?: boolean } = {}): string {
  return text.replace(options.keepLineBreaks ? UNSAFE_BUT_LINES : UNSAFE, escapeOne);
}

/**
 * Given text and a budget in UTF-8 bytes, return the text when it fits, else
 * its start, cut at a character boundary, followed by `… (N bytes)` naming
 * the whole length, all within the budget.
 */
export function cutToBytes(text: string, maxBytes: number): string {
  const bytes = Buffer.byteLength(text);
  if (bytes <= maxBytes) return text;
  const suffix = `… (${bytes} bytes)`;
  const room = Math.max(0, maxBytes - Buffer.byteLength(suffix));
  // Every UTF-16 unit is at least one byte: the first `room` units hold enough.
  let kept = Buffer.from(text.slice(0, room)).subarray(0, room).toString('utf8');
  // A cut inside a multi-byte character decodes to U+FFFD: drop it.
  while (kept.endsWith('\ufffd') && !text.startsWith(kept)) kept = kept.slice(0, -1);
  return `${kept}${suffix}`;
}

/**
 * Given a name from an archive and a budget in UTF-8 bytes, return it quoted
 * as a JSON string with every control character escaped; when that is longer
 * than the budget, its start (never half an escape), the closing quote and
 * `… (N-byte name)`: safe in a warning, a log line or a terminal.
 */
export function quoteName(name: string, maxBytes: number): string {
  // Quoting adds at least the two quotes: a longer name cannot fit, and is not escaped whole (it may be 1 MiB).
  if (name.length + 2 <= maxBytes) {
    const whole = escapeControls(JSON.stringify(name));
    if (Buffer.byteLength(whole) <= maxBytes) return whole;
  }
  const suffix = `"… (${Buffer.byteLength(name)}-byte name)`;
  let room = maxBytes - 1 - Buffer.byteLength(suffix);
  let kept = '';
  for (const character of name) {
    const piece = escapeControls(JSON.stringify(character).slice(1, -1));
    const size = Buffer.byteLength(piece);
    if (size > room) break;
    kept += piece;
    room -= size;
  }
  return `"${kept}${suffix}`;
}
