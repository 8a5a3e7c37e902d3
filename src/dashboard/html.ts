/**
 * Server-rendered HTML for the overview pages: a tagged template that escapes
 * every value it is given, unless the value is already HTML made by it. A
 * dozen lines of our own rather than a template engine: the pages are small,
 * built in code, and every byte a node or a reason carries must be escaped,
 * which is the one thing this does.
 */

/** HTML built by `html`: inserted as it is. */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Given any text, return it escaped for an HTML text node or a quoted attribute. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => ESCAPES[character]!);
}

type Value = Html | string | number | null | undefined | false | readonly Value[];

function render(value: Value): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

/** A template literal tag: the literal parts are HTML, every value is escaped (arrays joined, null/false omitted). */
export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let text = strings[0]!;
  values.forEach((value, index) => {
    text += render(value) + strings[index + 1]!;
  });
  return new Html(text);
}
