// A tiny bitmap font drawn for this project: 5x7 cells (cap height 7) with two
// extra rows for descenders, printable ASCII letters, digits and the
// punctuation plots need. Characters it lacks are drawn as '?'. Text is scaled
// by whole pixels, so it stays crisp in PNGs.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "vqvae2/viz/raster.hpp"

namespace vqvae2::viz {

namespace font {

inline constexpr int kGlyphWidth = 5;
inline constexpr int kCapHeight = 7;   // rows above the baseline
inline constexpr int kCellHeight = 9;  // with the descender rows
inline constexpr int kAdvance = kGlyphWidth + 1;

// Rows top to bottom, '#' = ink, separated by '/'; 7 rows, or 9 with a descender.
struct GlyphSource {
  char ch;
  const char* rows;
};

// clang-format off
inline constexpr GlyphSource kGlyphs[] = {
  {' ', "...../...../...../...../...../...../....."},
  {'!', "..#../..#../..#../..#../..#../...../..#.."},
  {'%', "##.../##..#/...#./..#../.#.../#..##/...##"},
  {'\'', "..#../..#../.#.../...../...../...../....."},
  {'(', "...#./..#../.#.../.#.../.#.../..#../...#."},
  {')', ".#.../..#../...#./...#./...#./..#../.#..."},
  {'*', "...../..#../#.#.#/.###./#.#.#/..#../....."},
  {'+', "...../..#../..#../#####/..#../..#../....."},
  {',', "...../...../...../...../...../.##../.##../..#../.#..."},
  {'-', "...../...../...../.###./...../...../....."},
  {'.', "...../...../...../...../...../.##../.##.."},
  {'/', "...../....#/...#./..#../.#.../#..../....."},
  {'0', ".###./#...#/#..##/#.#.#/##..#/#...#/.###."},
  {'1', "..#../.##../..#../..#../..#../..#../.###."},
  {'2', ".###./#...#/....#/...#./..#../.#.../#####"},
  {'3', "#####/...#./..#../...#./....#/#...#/.###."},
  {'4', "...#./..##./.#.#./#..#./#####/...#./...#."},
  {'5', "#####/#..../####./....#/....#/#...#/.###."},
  {'6', "..##./.#.../#..../####./#...#/#...#/.###."},
  {'7', "#####/....#/...#./..#../.#.../.#.../.#..."},
  {'8', ".###./#...#/#...#/.###./#...#/#...#/.###."},
  {'9', ".###./#...#/#...#/.####/....#/...#./.##.."},
  {':', "...../.##../.##../...../.##../.##../....."},
  {'=', "...../...../#####/...../#####/...../....."},
  {'?', ".###./#...#/....#/...#./..#../...../..#.."},
  {'A', ".###./#...#/#...#/#####/#...#/#...#/#...#"},
  {'B', "####./#...#/#...#/####./#...#/#...#/####."},
  {'C', ".###./#...#/#..../#..../#..../#...#/.###."},
  {'D', "###../#..#./#...#/#...#/#...#/#..#./###.."},
  {'E', "#####/#..../#..../####./#..../#..../#####"},
  {'F', "#####/#..../#..../####./#..../#..../#...."},
  {'G', ".###./#...#/#..../#.###/#...#/#...#/.####"},
  {'H', "#...#/#...#/#...#/#####/#...#/#...#/#...#"},
  {'I', ".###./..#../..#../..#../..#../..#../.###."},
  {'J', "..###/...#./...#./...#./...#./#..#./.##.."},
  {'K', "#...#/#..#./#.#../##.../#.#../#..#./#...#"},
  {'L', "#..../#..../#..../#..../#..../#..../#####"},
  {'M', "#...#/##.##/#.#.#/#.#.#/#...#/#...#/#...#"},
  {'N', "#...#/#...#/##..#/#.#.#/#..##/#...#/#...#"},
  {'O', ".###./#...#/#...#/#...#/#...#/#...#/.###."},
  {'P', "####./#...#/#...#/####./#..../#..../#...."},
  {'Q', ".###./#...#/#...#/#...#/#.#.#/#..#./.##.#"},
  {'R', "####./#...#/#...#/####./#.#../#..#./#...#"},
  {'S', ".####/#..../#..../.###./....#/....#/####."},
  {'T', "#####/..#../..#../..#../..#../..#../..#.."},
  {'U', "#...#/#...#/#...#/#...#/#...#/#...#/.###."},
  {'V', "#...#/#...#/#...#/#...#/#...#/.#.#./..#.."},
  {'W', "#...#/#...#/#...#/#.#.#/#.#.#/#.#.#/.#.#."},
  {'X', "#...#/#...#/.#.#./..#../.#.#./#...#/#...#"},
  {'Y', "#...#/#...#/.#.#./..#../..#../..#../..#.."},
  {'Z', "#####/....#/...#./..#../.#.../#..../#####"},
  {'[', ".###./.#.../.#.../.#.../.#.../.#.../.###."},
  {']', ".###./...#./...#./...#./...#./...#./.###."},
  {'_', "...../...../...../...../...../...../...../#####"},
  {'a', "...../...../.###./....#/.####/#...#/.####"},
  {'b', "#..../#..../#.##./##..#/#...#/#...#/####."},
  {'c', "...../...../.###./#..../#..../#...#/.###."},
  {'d', "....#/....#/.##.#/#..##/#...#/#...#/.####"},
  {'e', "...../...../.###./#...#/#####/#..../.###."},
  {'f', "..##./.#..#/.#.../###../.#.../.#.../.#..."},
  {'g', "...../...../.####/#...#/#...#/#...#/.####/....#/.###."},
  {'h', "#..../#..../#.##./##..#/#...#/#...#/#...#"},
  {'i', "..#../...../.##../..#../..#../..#../.###."},
  {'j', "...#./...../..##./...#./...#./...#./...#./#..#./.##.."},
  {'k', "#..../#..../#..#./#.#../##.../#.#../#..#."},
  {'l', ".##../..#../..#../..#../..#../..#../.###."},
  {'m', "...../...../##.#./#.#.#/#.#.#/#.#.#/#.#.#"},
  {'n', "...../...../#.##./##..#/#...#/#...#/#...#"},
  {'o', "...../...../.###./#...#/#...#/#...#/.###."},
  {'p', "...../...../####./#...#/#...#/#...#/####./#..../#...."},
  {'q', "...../...../.####/#...#/#...#/#...#/.####/....#/....#"},
  {'r', "...../...../#.##./##..#/#..../#..../#...."},
  {'s', "...../...../.####/#..../.###./....#/####."},
  {'t', ".#.../.#.../###../.#.../.#.../.#..#/..##."},
  {'u', "...../...../#...#/#...#/#...#/#..##/.##.#"},
  {'v', "...../...../#...#/#...#/#...#/.#.#./..#.."},
  {'w', "...../...../#...#/#...#/#.#.#/#.#.#/.#.#."},
  {'x', "...../...../#...#/.#.#./..#../.#.#./#...#"},
  {'y', "...../...../#...#/#...#/#...#/#...#/.####/....#/.###."},
  {'z', "...../...../#####/...#./..#../.#.../#####"},
  {'|', "..#../..#../..#../..#../..#../..#../..#.."},
};
// clang-format on

// Bit r*5 + c set = ink at row r, column c.
using Bitmap = std::uint64_t;

constexpr Bitmap parse(const char* rows) {
  Bitmap bits = 0;
  int r = 0, c = 0;
  for (const char* p = rows; *p; ++p) {
    if (*p == '/') {
      ++r;
      c = 0;
      continue;
    }
    if (*p == '#') bits |= Bitmap{1} << (r * kGlyphWidth + c);
    ++c;
  }
  return bits;
}

constexpr std::array<Bitmap, 128> make_table() {
  std::array<Bitmap, 128> t{};
  Bitmap unknown = 0;
  for (const GlyphSource& g : kGlyphs)
    if (g.ch == '?') unknown = parse(g.rows);
  for (auto& b : t) b = unknown;
  for (const GlyphSource& g : kGlyphs) t[static_cast<unsigned char>(g.ch)] = parse(g.rows);
  return t;
}
inline constexpr std::array<Bitmap, 128> kTable = make_table();

inline Bitmap glyph(char ch) {
  const auto u = static_cast<unsigned char>(ch);
  return u < 128 ? kTable[u] : kTable[static_cast<unsigned char>('?')];
}

}  // namespace font

// Width and height in pixels of `text` drawn at `scale` (cell height, descender included).
inline int text_width(std::string_view text, int scale) {
  return text.empty() ? 0 : (static_cast<int>(text.size()) * font::kAdvance - 1) * scale;
}
inline int text_height(int scale) { return font::kCellHeight * scale; }

// Draws `text` with its top-left cell corner at (x, y). With vertical = true
// the text is turned 90 degrees counter-clockwise (reading bottom to top) and
// (x, y) is the top-left of its bounding box.
inline void draw_text(Raster& img, int x, int y, std::string_view text, Rgb color, int scale = 1,
                      bool vertical = false) {
  const int len = text_width(text, scale);
  for (std::size_t i = 0; i < text.size(); ++i) {
    const font::Bitmap bits = font::glyph(text[i]);
    for (int r = 0; r < font::kCellHeight; ++r)
      for (int c = 0; c < font::kGlyphWidth; ++c) {
        if (!((bits >> (r * font::kGlyphWidth + c)) & 1)) continue;
        const int gx = static_cast<int>(i) * font::kAdvance * scale + c * scale;  // along the text
        const int gy = r * scale;                                                 // across it
        for (int dy = 0; dy < scale; ++dy)
          for (int dx = 0; dx < scale; ++dx) {
            if (vertical)
              img.set(x + gy + dy, y + len - 1 - (gx + dx), color);
            else
              img.set(x + gx + dx, y + gy + dy, color);
          }
      }
  }
}

}  // namespace vqvae2::viz
