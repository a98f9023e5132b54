#pragma once
/// losses/ options: the `[loss]` table (LossOptions) and one options type per KD term, held by a `[[distill]]`
/// table (DistillOptions). A KD term takes only its own keys: an option it does not take is a ConfigError naming
/// the term and the option (train/config.cpp, which reads the tables; docs/design.md has the one exception, for
/// resolved configs written by an older segkd).
///
/// Adding a KD term: its options struct here (with `kType`, `fields()`, `validate()`) and in `TermOptions`, its
/// class in terms.h/.cpp, one entry in the registry (terms.cpp), and its tests. Nothing outside losses/ changes.
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "common/config_schema.h"

namespace segkd::losses {

/// The `[loss]` table: task loss options.
struct LossOptions {
  using Self = LossOptions;
  SEGKD_OPTION(double, aux_weight, 0.4);
  SEGKD_OPTION(std::vector<double>, class_weights);  ///< empty = unweighted (else one per class: checked by train/)
  SEGKD_OPTION(bool, skip_nonfinite, false);         ///< skip a step whose loss is NaN/inf instead of stopping
  SEGKD_OPTION(int64_t, max_skipped_steps, 10);      ///< with skip_nonfinite: stop after this many in a row

  static const std::vector<Field<LossOptions>>& fields();
  /// Throws ConfigError naming `prefix`.KEY ("loss.aux_weight = -1.0: must be >= 0").
  void validate(const std::string& prefix = "loss") const;
  void validate(const std::string& prefix, const Checker& check) const;
};

/// `logit` (terms.h LogitTerm).
struct LogitOptions {
  using Self = LogitOptions;
  static constexpr const char* kType = "logit";
  SEGKD_OPTION(double, tau, 1.0);                 ///< temperature
  SEGKD_OPTION(std::string, resolution, "logits");  ///< "logits" | "label"
  SEGKD_OPTION(bool, mask_ignore, false);         ///< drop pixels whose label is ignore_index

  bool reads_features() const { return false; }
  static const std::vector<Field<LogitOptions>>& fields();
  void validate(const std::string& prefix, const Checker& check) const;
};

/// `feature` (FeatureTerm).
struct FeatureOptions {
  using Self = FeatureOptions;
  static constexpr const char* kType = "feature";
  SEGKD_OPTION(std::vector<std::string>, student, "layer4");  ///< student feature names
  SEGKD_OPTION(std::vector<std::string>, teacher, "layer4");  ///< matching teacher feature names (same length)
  SEGKD_OPTION(std::string, normalize, "none");               ///< none | channel
  SEGKD_OPTION(std::string, projector, "conv1x1");            ///< conv1x1 | conv1x1_bn

  bool reads_features() const { return true; }
  static const std::vector<Field<FeatureOptions>>& fields();
  void validate(const std::string& prefix, const Checker& check) const;
};

/// `cwd` (CwdTerm).
struct CwdOptions {
  using Self = CwdOptions;
  static constexpr const char* kType = "cwd";
  SEGKD_OPTION(double, tau, 1.0);
  SEGKD_OPTION(std::string, on, "logits");  ///< "logits" | "feature"
  SEGKD_OPTION(std::vector<std::string>, student, "layer4");  ///< with on = "feature"
  SEGKD_OPTION(std::vector<std::string>, teacher, "layer4");
  SEGKD_OPTION(std::string, projector, "conv1x1");  ///< conv1x1 | conv1x1_bn (where channels differ)

  bool reads_features() const { return on == "feature"; }
  static const std::vector<Field<CwdOptions>>& fields();
  void validate(const std::string& prefix, const Checker& check) const;
};

/// `pairwise` (PairwiseTerm).
struct PairwiseOptions {
  using Self = PairwiseOptions;
  static constexpr const char* kType = "pairwise";
  SEGKD_OPTION(std::vector<std::string>, student, "layer4");
  SEGKD_OPTION(std::vector<std::string>, teacher, "layer4");
  SEGKD_OPTION(int64_t, pool_kernel, 2);  ///< max-pool kernel (ceil mode)

  bool reads_features() const { return true; }
  static const std::vector<Field<PairwiseOptions>>& fields();
  void validate(const std::string& prefix, const Checker& check) const;
};

/// `ifvd` (IfvdTerm).
struct IfvdOptions {
  using Self = IfvdOptions;
  static constexpr const char* kType = "ifvd";
  SEGKD_OPTION(std::vector<std::string>, student, "layer4");
  SEGKD_OPTION(std::vector<std::string>, teacher, "layer4");

  bool reads_features() const { return true; }
  static const std::vector<Field<IfvdOptions>>& fields();
  void validate(const std::string& prefix, const Checker& check) const;
};

/// `at` (AtTerm).
struct AtOptions {
  using Self = AtOptions;
  static constexpr const char* kType = "at";
  SEGKD_OPTION(std::vector<std::string>, student, "layer4");
  SEGKD_OPTION(std::vector<std::string>, teacher, "layer4");

  bool reads_features() const { return true; }
  static const std::vector<Field<AtOptions>>& fields();
  void validate(const std::string& prefix, const Checker& check) const;
};

/// `dist` (DistTerm).
struct DistOptions {
  using Self = DistOptions;
  static constexpr const char* kType = "dist";
  SEGKD_OPTION(double, tau, 1.0);
  SEGKD_OPTION(double, beta, 1.0);   ///< inter-class weight
  SEGKD_OPTION(double, gamma, 1.0);  ///< intra-class weight

  bool reads_features() const { return false; }
  static const std::vector<Field<DistOptions>>& fields();
  void validate(const std::string& prefix, const Checker& check) const;
};

/// The options of one KD term; std::monostate = an unknown type (refused by validate()).
using TermOptions = std::variant<std::monostate, LogitOptions, FeatureOptions, CwdOptions, PairwiseOptions,
                                 IfvdOptions, AtOptions, DistOptions>;

/// One `[[distill]]` table: the term's `type`, its `weight` in the objective, and the term's own options.
///   DistillOptions(CwdOptions().set_tau(4).set_on("feature")).set_weight(0.5)
struct DistillOptions {
  using Self = DistillOptions;
  SEGKD_OPTION(std::string, type);  ///< a registered term (registered_terms())
  SEGKD_OPTION(double, weight, 1.0);
  TermOptions options;

  DistillOptions() = default;
  /// The term `type` with its default options (an unknown type has none).
  explicit DistillOptions(const std::string& term_type);
  explicit DistillOptions(const char* term_type) : DistillOptions(std::string(term_type)) {}
  /// The term of these options.
  template <typename T, typename = decltype(T::kType)>
  DistillOptions(T term) : type(T::kType), options(std::move(term)) {}  // NOLINT: implicit on purpose

  /// The term's options; throws segkd::Error when the table holds another term.
  template <typename T>
  T& as() {
    if (auto* p = std::get_if<T>(&options)) return *p;
    throw Error(str_cat("distill options: the table holds a '", type, "' term, not '", T::kType, "'"));
  }
  template <typename T>
  const T& as() const {
    return const_cast<DistillOptions*>(this)->as<T>();
  }

  /// The table's keys bound to this object: type, weight, then the term's keys.
  BoundFields bind_fields();
  BoundFields bind_fields() const { return const_cast<DistillOptions*>(this)->bind_fields(); }
  /// The keys the term takes besides `type` ("weight", "tau", ...); for an unknown type just "weight".
  std::vector<std::string> keys() const;
  /// True when the term reads student/teacher features (and those lists must name some).
  bool reads_features() const;
  /// The feature pairs the term compares (empty when it reads none).
  std::pair<std::vector<std::string>, std::vector<std::string>> feature_pairs() const;

  /// Throws ConfigError naming `prefix`.KEY: an unknown type, a negative weight, the term's own rules.
  void validate(const std::string& prefix = "distill[0]") const;
  void validate(const std::string& prefix, const Checker& check) const;
};

/// The registered KD term types, in registry order.
std::vector<std::string> registered_terms();

/// Every key some `[[distill]]` table can take (type, weight and every term's keys) with its type name, for
/// `--set` and "did you mean".
std::vector<std::pair<std::string, std::string>> distill_key_types();

/// One key of the `[[distill]]` table as segkd wrote it before the options were split per term: every term
/// carried all of them. `text` is its default as the resolved TOML shows it.
struct FormerSharedKey {
  const char* name;
  const char* text;
};
/// tau, resolution, mask_ignore, student, teacher, normalize, projector, on, pool_kernel, beta, gamma.
const std::vector<FormerSharedKey>& former_shared_keys();

/// The canonical `key = value` texts of a `[[distill]]` table (the resolved TOML): type, weight, then each former
/// shared key (the term's value where it takes the key, else the former default), then the term's other keys.
/// Keeping the former keys keeps the resolved TOML, and so the config hash, of every existing config unchanged.
std::vector<std::pair<std::string, std::string>> render_distill(const DistillOptions& d);

}  // namespace segkd::losses
