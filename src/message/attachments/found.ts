/** A file found inside a part's content by one of the scanners. */
export interface FoundFile {
  kind: 'uue' | 'binhex' | 'tnef';
  name: string;
  size: number;
}

export type FoundHandler = (file: FoundFile) => void;
