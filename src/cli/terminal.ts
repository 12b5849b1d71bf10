import { UNSAFE_TEXT } from "../domain/validate.js";

// What the CLI prints from a server reaches a person's terminal. The server refuses free text
// that a terminal would act on (UNSAFE_TEXT), but entries written before it did, or a server one
// does not trust, could still carry a newline that forges a timeline line, an escape sequence or
// a bidi override: every string from the server is printed through `shown`.

const UNSAFE = new RegExp(UNSAFE_TEXT.source, "g");

const escaped = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;

/** The text with each unsafe character as a visible \uXXXX escape (also a valid JSON escape). */
export function shown(s: string): string {
  return s.replace(UNSAFE, escaped);
}

/**
 * JSON.stringify for the terminal: the same JSON value, with no unsafe character left raw.
 * JSON.stringify escapes controls inside strings itself, so a raw newline is its own layout.
 */
export function json(v: unknown, space?: number): string {
  return JSON.stringify(v, null, space).replace(UNSAFE, (c) => (c === "\n" ? c : escaped(c)));
}
