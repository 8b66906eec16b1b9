/**
 * The demo desktop's bitmap font: printable ASCII (32..126) on a 5x9 grid, drawn for this
 * project. Rows 0-6 hold capitals and digits, rows 7-8 the descenders of g, j, p, q, y.
 *
 * Each glyph is stored as one base-32 digit per row, top row first, bit 4 being the
 * leftmost column ("e" = 01110 = .###.); blank rows at the bottom are left out. That keeps
 * the whole table to a dozen lines while staying editable by hand.
 */

export const GLYPH_WIDTH = 5;
export const GLYPH_HEIGHT = 9;
/** One blank column and one blank row between neighbouring characters. */
export const CELL_WIDTH = GLYPH_WIDTH + 1;
export const CELL_HEIGHT = GLYPH_HEIGHT + 1;

const FIRST_CODE = 32;

// Eight glyphs a line, each line labelled with its characters: kept as written.
// prettier-ignore
const TABLE = [
  '', '4444404', 'aaa', 'aavavaa', '4fke5u4', 'pp248jj', 'cik8lid', '448', //  !"#$%&'
  '2488842', '8422248', '04lel4', '044v44', '00000cc48', '000v', '00000cc', '11248gg', // ()*+,-./
  'ehjlphe', '4ck444v', 'eh1248v', 'u11e11u', '26aiv22', 'vgu11he', '68guhhe', 'v124888', // 01234567
  'ehhehhe', 'ehhf12c', '0cc0cc', '0cc00cc48', '248g842', '00v0v', '8421248', 'eh12404', // 89:;<=>?
  'ehnlngf', 'ehhvhhh', 'uhhuhhu', 'ehggghe', 'sihhhis', 'vgguggv', 'vgguggg', 'ehgnhhf', // @ABCDEFG
  'hhhvhhh', 'e44444e', '72222ic', 'hikokih', 'ggggggv', 'hrllhhh', 'hhpljhh', 'ehhhhhe', // HIJKLMNO
  'uhhuggg', 'ehhhlid', 'uhhukih', 'fgge11u', 'v444444', 'hhhhhhe', 'hhhhha4', 'hhhllla', // PQRSTUVW
  'hha4ahh', 'hha4444', 'v1248gv', 'e88888e', 'gg84211', 'e22222e', '4ah', '0000000v', // XYZ[\]^_
  '842', '00e1fhf', 'gguhhhu', '00eggge', '11fhhhf', '00ehvge', '698s888', '00fhhhf1e', // `abcdefg
  'gguhhhh', '40c444e', '2062222ic', 'ggikoki', 'c44444e', '00qllll', '00uhhhh', '00ehhhe', // hijklmno
  '00uhhhugg', '00fhhhf11', '00mpggg', '00fge1u', '88s8896', '00hhhjd', '00hhha4', '00hllla', // pqrstuvw
  '00ha4ah', '00hhhhf1e', '00v248v', '3448443', '4444444', 'o44244o', '008l2', // xyz{|}~
];

/** Drawn for any character the table lacks, so missing glyphs are visible rather than blank. */
const BOX = 'vhhhhhv';

function decode(digits: string): readonly number[] {
  const rows = new Array<number>(GLYPH_HEIGHT).fill(0);
  for (let row = 0; row < digits.length; row++) rows[row] = parseInt(digits.charAt(row), 32);
  return Object.freeze(rows);
}

const GLYPHS = TABLE.map(decode);
const BOX_GLYPH = decode(BOX);

/**
 * The rows of a character's glyph, top first, GLYPH_HEIGHT of them; in each row bit
 * (GLYPH_WIDTH - 1 - column) is set where the pixel is lit.
 */
export function glyph(charCode: number): readonly number[] {
  return GLYPHS[charCode - FIRST_CODE] ?? BOX_GLYPH;
}
