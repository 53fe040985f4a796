// vqvae2_import_nifti: turns a T1 volume (.nii / .nii.gz) into OASIS-layout
// axial PNG slices (see include/vqvae2/data/nifti_import.hpp for the procedure).
#include <cstdio>
#include <exception>
#include <string>

#include "cli.hpp"
#include "vqvae2/data/nifti_import.hpp"

int main(int argc, char** argv) {
  std::string input, output, prefix = "case", split_rule = "8:1:1";
  int size = 256;
  double percentile = 99.5, min_area = 0.15;
  bool neurological = false;
  cli::Parser parser("vqvae2_import_nifti",
                     "write the axial slices of a T1 NIfTI volume as 8-bit PNGs in keras_png_slices_{train,validate,"
                     "test}/");
  parser.option("input", &input, "the volume, .nii or .nii.gz (e.g. /usr/share/mricron/templates/ch2bet.nii.gz)")
      .option("output", &output, "the OASIS root folder to write (created if needed)")
      .option("prefix", &prefix, "file names are <prefix>_slice_<k>.png")
      .option("split-rule", &split_rule,
              "slice k goes to split k mod n: 'a:b:c' = a train, b validate, c test residues, or a comma list "
              "such as train,train,validate,test")
      .option("size", &size, "output side in pixels")
      .option("percentile", &percentile, "percentile of the non-zero voxels mapped to 255")
      .option("min-area", &min_area, "skip slices whose brain area is below this fraction of the largest")
      .flag("neurological", &neurological, "patient's left on the image's left (default: radiological, as OASIS)");
  try {
    if (!parser.parse(argc, argv)) return 0;
    VQVAE2_CHECK(!input.empty(), "vqvae2_import_nifti: --input is required (see --help).");
    VQVAE2_CHECK(!output.empty(), "vqvae2_import_nifti: --output is required (see --help).");
    vqvae2::data::NiftiImportOptions opt;
    opt.prefix = prefix;
    opt.split = vqvae2::data::SplitRule::parse(split_rule);
    opt.slices.size = size;
    opt.slices.percentile = percentile;
    opt.slices.min_area_fraction = min_area;
    opt.slices.radiological = !neurological;
    auto rep = vqvae2::data::import_nifti(input, output, opt);
    std::printf("%s: %dx%dx%d voxels of %.3gx%.3gx%.3g mm, stored %s, oriented by %s\n", input.c_str(), rep.nx, rep.ny,
                rep.nz, rep.dx, rep.dy, rep.dz, rep.source_orientation.c_str(), rep.transform.c_str());
    std::printf("intensity 0..%g -> 0..255; kept %zu slices (z %d..%d): %lld train, %lld validate, %lld test -> %s\n",
                rep.hi, rep.files.size(), rep.z.front(), rep.z.back(), static_cast<long long>(rep.train),
                static_cast<long long>(rep.validate), static_cast<long long>(rep.test), output.c_str());
    if (rep.dx < 0.95f || rep.dx > 1.05f || rep.dy < 0.95f || rep.dy > 1.05f)
      std::fprintf(stderr, "warning: in-plane voxels are %.3gx%.3g mm, not 1 mm; slices are not resampled.\n", rep.dx,
                   rep.dy);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
