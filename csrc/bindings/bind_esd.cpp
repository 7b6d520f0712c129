#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "hts/esd.hpp"
#include "hts/layer_spectra.hpp"

namespace py = pybind11;

namespace hts::bindings {
namespace {

// Checks that `a` is a native-endian float array with item-aligned strides; returns its
// element type and item size.
ScalarType checked_type(const py::array& a, py::ssize_t& item) {
    const py::dtype dt = a.dtype();
    if (dt.kind() != 'f') throw py::type_error("expected a floating-point matrix");
    if (dt.byteorder() == '>' || dt.byteorder() == '<') {
        const std::uint16_t probe = 1;
        const bool little = *reinterpret_cast<const unsigned char*>(&probe) == 1;
        if ((dt.byteorder() == '<') != little)
            throw py::value_error("matrix has non-native byte order; convert it first");
    }
    ScalarType type;
    switch (dt.itemsize()) {
        case 2: type = ScalarType::float16; break;
        case 4: type = ScalarType::float32; break;
        case 8: type = ScalarType::float64; break;
        default: throw py::type_error("unsupported floating-point width");
    }
    item = static_cast<py::ssize_t>(dt.itemsize());
    for (py::ssize_t d = 0; d < a.ndim(); ++d)
        if (a.strides(d) % item != 0)
            throw py::value_error("matrix strides are not a multiple of the item size");
    return type;
}

MatrixView view_of(const py::array& a) {
    if (a.ndim() != 2) throw py::value_error("expected a 2-D matrix");
    py::ssize_t item = 0;
    MatrixView v;
    v.type = checked_type(a, item);
    v.data = a.data();
    v.rows = a.shape(0);
    v.cols = a.shape(1);
    v.row_stride = a.strides(0) / item;
    v.col_stride = a.strides(1) / item;
    return v;
}

// The matrices of one entry: a 2-D matrix, or each slice a[i] of a 3-D stack (a conv2d
// kernel's positions), in order.
std::vector<MatrixView> views_of(const py::array& a) {
    if (a.ndim() != 3) return {view_of(a)};
    py::ssize_t item = 0;
    const ScalarType type = checked_type(a, item);
    std::vector<MatrixView> views(static_cast<std::size_t>(a.shape(0)));
    for (py::ssize_t i = 0; i < a.shape(0); ++i) {
        MatrixView& v = views[static_cast<std::size_t>(i)];
        v.type = type;
        v.data = static_cast<const char*>(a.data()) + i * a.strides(0);
        v.rows = a.shape(1);
        v.cols = a.shape(2);
        v.row_stride = a.strides(1) / item;
        v.col_stride = a.strides(2) / item;
    }
    return views;
}

}  // namespace

void register_esd(py::module_& m) {
    m.def(
        "esd_batch",
        [](const std::vector<py::array>& matrices, int method, const std::vector<double>& scales,
           int threads) {
            if (scales.size() != matrices.size())
                throw py::value_error("one scale per matrix is required");
            const std::size_t count = matrices.size();
            std::vector<MatrixView> views;
            std::vector<py::array_t<double>> outputs;
            std::vector<double*> out_pointers;
            for (const auto& a : matrices) {
                views.push_back(view_of(a));
                const auto k = std::max<std::int64_t>(
                    0, std::min(views.back().rows, views.back().cols));
                outputs.emplace_back(static_cast<py::ssize_t>(k));
                out_pointers.push_back(outputs.back().mutable_data());
            }
            std::vector<EsdResult> results(count);
            {
                // Inputs are kept alive by `matrices`, outputs by `outputs`; the kernels touch
                // no Python object.
                py::gil_scoped_release release;
                esd_batch(views.data(), static_cast<std::int64_t>(count),
                          static_cast<EsdMethod>(method), scales.data(), out_pointers.data(),
                          results.data(), threads);
            }
            py::list out;
            for (std::size_t k = 0; k < count; ++k)
                out.append(py::make_tuple(outputs[k], static_cast<int>(results[k].error),
                                          results[k].info));
            return out;
        },
        py::arg("matrices"), py::arg("method"), py::arg("scales"), py::arg("threads"),
        "ESDs of many matrices: list of (eigenvalues, error code, LAPACK info).");

    m.def(
        "layer_spectra",
        [](const std::vector<py::array>& matrices, const std::vector<double>& scales,
           const std::vector<std::int64_t>& firsts, const std::vector<std::int64_t>& counts,
           const std::vector<std::int64_t>& keep_tops, const std::vector<double>& Ns, int method,
           double threshold, std::int64_t small_n_cutoff, std::int64_t small_n_min_tail,
           double tolerance, bool compat, int threads, bool keep_pooled) {
            if (scales.size() != matrices.size())
                throw py::value_error("one scale per entry is required");
            // Each entry is a matrix or a 3-D stack of them; a matrix the kernels cannot read
            // (not 2-D, not floating point, foreign byte order) fails its own layer only: its
            // message is returned with code -1.
            std::vector<MatrixView> views;
            std::vector<double> view_scales;
            std::vector<std::string> unreadable;  // the reader's message per matrix
            std::vector<bool> readable;
            views.reserve(matrices.size());
            for (std::size_t i = 0; i < matrices.size(); ++i) {
                std::vector<MatrixView> entry;
                std::string error;
                bool ok = true;
                try {
                    entry = views_of(matrices[i]);
                } catch (const std::exception& e) {
                    ok = false;
                    error = e.what();
                    const py::ssize_t n = matrices[i].ndim() == 3 ? matrices[i].shape(0) : 1;
                    entry.assign(static_cast<std::size_t>(n), MatrixView{});
                }
                for (const MatrixView& v : entry) {
                    views.push_back(v);
                    view_scales.push_back(scales[i]);
                    unreadable.push_back(error);
                    readable.push_back(ok);
                }
            }
            const std::size_t num = firsts.size();
            if (counts.size() != num || keep_tops.size() != num || Ns.size() != num)
                throw py::value_error("firsts, counts, keep_tops and Ns differ in length");
            std::vector<LayerGroup> groups(num);
            for (std::size_t g = 0; g < num; ++g) {
                if (firsts[g] < 0 || counts[g] < 1 ||
                    firsts[g] + counts[g] > static_cast<std::int64_t>(views.size()))
                    throw py::value_error("a layer's matrices lie outside the batch");
                groups[g] = LayerGroup{firsts[g], counts[g], keep_tops[g], Ns[g]};
            }
            std::vector<LayerGroup> runnable;
            std::vector<std::int64_t> bad_matrix(num, -1);
            for (std::size_t g = 0; g < num; ++g) {
                for (std::int64_t k = 0; k < groups[g].count; ++k) {
                    if (!readable[static_cast<std::size_t>(groups[g].first + k)]) {
                        bad_matrix[g] = groups[g].first + k;
                        break;
                    }
                }
                // an unreadable layer still takes a slot, with no matrices to decompose
                runnable.push_back(bad_matrix[g] < 0 ? groups[g] : LayerGroup{0, 0, -1, 0.0});
            }
            const PowerLawOptions options =
                make_options(threshold, small_n_cutoff, small_n_min_tail);
            NormOptions norm_options;
            norm_options.tolerance = tolerance;
            norm_options.compat = compat;
            std::vector<LayerSpectrum> out(num);
            {
                py::gil_scoped_release release;  // `matrices` keeps the inputs alive
                layer_spectra(views.data(), view_scales.data(), runnable.data(),
                              static_cast<std::int64_t>(num), static_cast<EsdMethod>(method),
                              options, norm_options, out.data(), threads);
            }
            // Columnar result: one row per layer in two arrays (no Python object per layer
            // beyond its pooled ESD), columns in the order of
            // hts_fast.analysis.layer_spectra.LayerSpectraTable.REALS / COUNTS.
            py::list pooled;
            py::array_t<double> reals({static_cast<py::ssize_t>(num), py::ssize_t{12}});
            py::array_t<std::int64_t> ints({static_cast<py::ssize_t>(num), py::ssize_t{13}});
            auto real = reals.mutable_unchecked<2>();
            auto count = ints.mutable_unchecked<2>();
            py::list messages;
            for (std::size_t g = 0; g < num; ++g) {
                const auto& r = out[g];
                const auto row = static_cast<py::ssize_t>(g);
                const double values[12] = {r.sv_max, r.sv_min_smallest, r.sv_min_largest,
                                           r.norms.norm, r.norms.lambda_max, r.norms.entropy,
                                           r.norms.alpha_norm_sum, r.fit.alpha, r.fit.xmin,
                                           r.fit.xmax, r.fit.D, r.fit.sigma};
                const std::int64_t counts_row[13] = {
                    r.rank_loss, r.norms.matrix_rank, r.norms.weak_rank_loss,
                    r.fit.num_pl_spikes, r.fit.num_fit, r.fit.xmin_index,
                    static_cast<std::int64_t>(r.fit.method), static_cast<std::int64_t>(r.fit.error),
                    r.fit.bad_index, static_cast<std::int64_t>(r.esd.error), r.esd.info,
                    r.failed_matrix, static_cast<std::int64_t>(r.pooled.size())};
                for (py::ssize_t c = 0; c < 12; ++c) real(row, c) = values[c];
                for (py::ssize_t c = 0; c < 13; ++c) count(row, c) = counts_row[c];
                if (bad_matrix[g] >= 0) {  // unreadable: error -1 and the reader's message
                    count(row, 9) = -1;
                    count(row, 11) = bad_matrix[g];
                    messages.append(py::str(unreadable[static_cast<std::size_t>(bad_matrix[g])]));
                    pooled.append(py::none());
                    continue;
                }
                messages.append(py::none());
                if (keep_pooled)
                    pooled.append(py::array_t<double>(static_cast<py::ssize_t>(r.pooled.size()),
                                                      r.pooled.data()));
                else
                    pooled.append(py::none());
            }
            return py::make_tuple(pooled, reals, ints, messages);
        },
        py::arg("matrices"), py::arg("scales"), py::arg("firsts"), py::arg("counts"),
        py::arg("keep_tops"), py::arg("Ns"), py::arg("method"), py::arg("threshold"),
        py::arg("small_n_cutoff"), py::arg("small_n_min_tail"), py::arg("tolerance"),
        py::arg("compat"), py::arg("threads"), py::arg("keep_pooled") = true,
        "Per layer (a run of matrices; an entry of `matrices` is a 2-D matrix or a 3-D stack "
        "standing for its slices, with one scale per entry, and firsts/counts index the "
        "matrices so expanded): ESDs pooled and sorted, singular-value summaries, "
        "the power-law fit and the norm metrics, one thread per layer. Returns (pooled ESDs "
        "(None for a layer with an unreadable matrix), float64 array (layers, 12): sv_max, "
        "smallest and largest of the matrices' sv_min, norm, lambda_max, entropy, sum "
        "evals**alpha, fit alpha, xmin, xmax, D, sigma; int64 array (layers, 13): rank loss, "
        "matrix_rank, weak_rank_loss, fit num_pl_spikes, num_fit, xmin_index, method, error, "
        "bad index, esd error code (-1: unreadable matrix), LAPACK info, failed matrix index, "
        "pooled length; per layer the unreadable matrix's message or None). keep_pooled=False: "
        "None instead of every pooled ESD (when only the table's numbers are wanted).");

    m.def(
        "symmetric_eigenvalues",
        [](py::array_t<double, py::array::c_style> a) {
            if (a.ndim() != 2 || a.shape(0) != a.shape(1))
                throw py::value_error("expected a square matrix");
            if (!a.writeable()) throw py::value_error("the matrix must be writeable (it is overwritten)");
            const std::int64_t order = a.shape(0);
            py::array_t<double> values(static_cast<py::ssize_t>(order));
            EsdResult r;
            {
                py::gil_scoped_release release;  // `a` and `values` are kept alive by the caller
                r = symmetric_eigenvalues(a.mutable_data(), order, values.mutable_data());
            }
            return py::make_tuple(values, static_cast<int>(r.error), r.info);
        },
        py::arg("a"),
        "Eigenvalues (ascending) of a symmetric float64 C-ordered matrix, which is overwritten; "
        "returns (values, error code, LAPACK info).");

    m.def(
        "_half_to_double",
        [](const py::array_t<std::uint16_t, py::array::c_style | py::array::forcecast>& bits) {
            py::array_t<double> out(bits.size());
            auto* o = out.mutable_data();
            const auto* b = bits.data();
            for (py::ssize_t k = 0; k < bits.size(); ++k) o[k] = half_to_double(b[k]);
            return out;
        },
        "Test hook: float16 bit patterns -> float64 with the kernel's converter.");
}

}  // namespace hts::bindings
