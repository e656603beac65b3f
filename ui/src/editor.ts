import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import { bracketMatching, defaultHighlightStyle, foldGutter, foldKeymap, indentOnInput, StreamLanguage, syntaxHighlighting } from '@codemirror/language';
import { lua } from '@codemirror/legacy-modes/mode/lua';
import { linter, lintGutter, lintKeymap, setDiagnostics, type Diagnostic } from '@codemirror/lint';
import { highlightSelectionMatches, search, searchKeymap } from '@codemirror/search';
import { EditorState } from '@codemirror/state';
import { drawSelection, dropCursor, EditorView, highlightActiveLine, highlightActiveLineGutter, highlightSpecialChars, keymap, lineNumbers, rectangularSelection } from '@codemirror/view';
import type { CompileError } from './api.js';

export interface LuaEditor {
  view: EditorView;
  text(): string;
  /** Replaces the whole text (a new document: undo history starts over). */
  load(text: string): void;
  /** Shows a compile error (or none) as a diagnostic on its line. */
  showError(err: CompileError | null): void;
  /** Scrolls to a line and puts the cursor at its start. */
  goto(line: number): void;
  destroy(): void;
}

const theme = EditorView.theme({
  '&': { height: '100%', fontSize: '13.5px', backgroundColor: '#fff' },
  '.cm-scroller': { fontFamily: 'ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace', lineHeight: '1.5' },
  '.cm-gutters': { backgroundColor: '#f6f7f9', borderRight: '1px solid #e3e6ea', color: '#8a94a3' },
  '.cm-activeLineGutter': { backgroundColor: '#e8edf5' },
  '.cm-activeLine': { backgroundColor: '#f5f8fd' },
  '.cm-panels': { backgroundColor: '#f6f7f9' },
  '.cm-tooltip-lint': { maxWidth: '36em' },
  '&.cm-focused': { outline: 'none' },
});

/** The diagnostic for a compile error: the whole line Lua names (the last line when past the end). */
function diagnostic(state: EditorState, err: CompileError): Diagnostic {
  const doc = state.doc;
  const n = Math.min(Math.max(err.line ?? 1, 1), doc.lines);
  const line = doc.line(n);
  return { from: line.from, to: Math.max(line.to, line.from), severity: 'error', source: 'Lua', message: err.line ? err.message : err.error };
}

/**
 * CodeMirror 6 for Lua: highlighting (the legacy Lua mode), line numbers, folding, search
 * (Ctrl/Cmd-F), undo, bracket matching, a lint gutter. `check` compiles the text on the
 * server after typing pauses; `onSave` is Ctrl/Cmd-S.
 */
export function createEditor(
  parent: HTMLElement,
  opts: { check(text: string): Promise<CompileError | null>; onChange(): void; onSave(): void; onLint?(err: CompileError | null): void },
): LuaEditor {
  const extensions = [
    lineNumbers(),
    highlightActiveLineGutter(),
    highlightSpecialChars(),
    history(),
    foldGutter(),
    drawSelection(),
    dropCursor(),
    EditorState.allowMultipleSelections.of(true),
    indentOnInput(),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    bracketMatching(),
    rectangularSelection(),
    highlightActiveLine(),
    highlightSelectionMatches(),
    search({ top: true }),
    StreamLanguage.define(lua),
    EditorState.tabSize.of(2),
    lintGutter(),
    linter(
      async (view) => {
        const err = await opts.check(view.state.doc.toString());
        opts.onLint?.(err);
        return err ? [diagnostic(view.state, err)] : [];
      },
      { delay: 700 },
    ),
    keymap.of([
      { key: 'Mod-s', preventDefault: true, run: () => (opts.onSave(), true) },
      ...defaultKeymap,
      ...searchKeymap,
      ...historyKeymap,
      ...foldKeymap,
      ...lintKeymap,
      indentWithTab,
    ]),
    EditorView.updateListener.of((u) => {
      if (u.docChanged) opts.onChange();
    }),
    EditorView.contentAttributes.of({ 'aria-label': 'Script source' }),
    theme,
  ];
  const view = new EditorView({ parent, state: EditorState.create({ doc: '', extensions }) });
  return {
    view,
    text: () => view.state.doc.toString(),
    load(text) {
      view.setState(EditorState.create({ doc: text, extensions }));
    },
    showError(err) {
      view.dispatch(setDiagnostics(view.state, err ? [diagnostic(view.state, err)] : []));
    },
    goto(line) {
      const n = Math.min(Math.max(line, 1), view.state.doc.lines);
      const pos = view.state.doc.line(n).from;
      view.dispatch({ selection: { anchor: pos }, effects: EditorView.scrollIntoView(pos, { y: 'center' }) });
      view.focus();
    },
    destroy: () => view.destroy(),
  };
}
