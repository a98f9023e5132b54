// losses/ options: keys, validation, the `[[distill]]` table's term-dependent keys and its canonical form.
#include "losses/options.h"

#include <algorithm>
#include <cmath>

namespace segkd::losses {
namespace {

/// Feature names a KD term may compare (in the order messages list them).
const std::vector<std::string>& known_features() {
  static const std::vector<std::string> names{"layer1", "layer2", "layer3", "layer4", "head"};
  return names;
}

/// The rules of every term that compares student/teacher feature pairs.
void validate_pairs(const std::vector<std::string>& student, const std::vector<std::string>& teacher,
                    bool reads_features, const std::string& p, const Checker& check) {
  for (const auto& n : student) check.one_of(n, known_features(), p + ".student");
  for (const auto& n : teacher) check.one_of(n, known_features(), p + ".teacher");
  if (reads_features) check(!student.empty(), p + ".student", "must name at least one feature");
  check(teacher.size() == student.size(), p + ".teacher",
        str_cat("must list as many features as ", p, ".student (", student.size(), ")"));
}

void validate_tau(double tau, const std::string& p, const Checker& check) {
  check(std::isfinite(tau) && tau > 0, p + ".tau", "must be > 0 (and finite)");
}

void validate_projector(const std::string& projector, const std::string& p, const Checker& check) {
  check.one_of(projector, {"conv1x1", "conv1x1_bn"}, p + ".projector");
}

/// Calls fn(T*) for every term options type T of TermOptions (in order; T* is null, for the type only).
template <typename Fn, size_t... I>
void for_each_term_type(Fn&& fn, std::index_sequence<I...>) {
  (fn(static_cast<std::variant_alternative_t<I + 1, TermOptions>*>(nullptr)), ...);
}
template <typename Fn>
void for_each_term_type(Fn&& fn) {
  for_each_term_type(fn, std::make_index_sequence<std::variant_size_v<TermOptions> - 1>());
}

}  // namespace

// ------------------------------------------------------------------------------------------------------------------

const std::vector<Field<LossOptions>>& LossOptions::fields() {
  using S = LossOptions;
  static const std::vector<Field<S>> f{
      {"aux_weight", &S::aux_weight}, {"class_weights", &S::class_weights}, {"skip_nonfinite", &S::skip_nonfinite},
      {"max_skipped_steps", &S::max_skipped_steps}};
  return f;
}

void LossOptions::validate(const std::string& prefix) const {
  validate_standalone(*this, prefix);
}

void LossOptions::validate(const std::string& p, const Checker& check) const {
  check(aux_weight >= 0, p + ".aux_weight", "must be >= 0");
  check(max_skipped_steps >= 1, p + ".max_skipped_steps", "must be >= 1");
  for (double w : class_weights) check(w >= 0, p + ".class_weights", "each must be >= 0");
}

const std::vector<Field<LogitOptions>>& LogitOptions::fields() {
  using S = LogitOptions;
  static const std::vector<Field<S>> f{{"tau", &S::tau}, {"resolution", &S::resolution}, {"mask_ignore", &S::mask_ignore}};
  return f;
}
void LogitOptions::validate(const std::string& p, const Checker& check) const {
  validate_tau(tau, p, check);
  check.one_of(resolution, {"logits", "label"}, p + ".resolution");
}

const std::vector<Field<FeatureOptions>>& FeatureOptions::fields() {
  using S = FeatureOptions;
  static const std::vector<Field<S>> f{{"student", &S::student}, {"teacher", &S::teacher},
                                       {"normalize", &S::normalize}, {"projector", &S::projector}};
  return f;
}
void FeatureOptions::validate(const std::string& p, const Checker& check) const {
  validate_pairs(student, teacher, reads_features(), p, check);
  check.one_of(normalize, {"none", "channel"}, p + ".normalize");
  validate_projector(projector, p, check);
}

const std::vector<Field<CwdOptions>>& CwdOptions::fields() {
  using S = CwdOptions;
  static const std::vector<Field<S>> f{{"tau", &S::tau}, {"on", &S::on}, {"student", &S::student},
                                       {"teacher", &S::teacher}, {"projector", &S::projector}};
  return f;
}
void CwdOptions::validate(const std::string& p, const Checker& check) const {
  validate_tau(tau, p, check);
  check.one_of(on, {"logits", "feature"}, p + ".on");
  validate_pairs(student, teacher, reads_features(), p, check);
  validate_projector(projector, p, check);
}

const std::vector<Field<PairwiseOptions>>& PairwiseOptions::fields() {
  using S = PairwiseOptions;
  static const std::vector<Field<S>> f{{"student", &S::student}, {"teacher", &S::teacher},
                                       {"pool_kernel", &S::pool_kernel}};
  return f;
}
void PairwiseOptions::validate(const std::string& p, const Checker& check) const {
  validate_pairs(student, teacher, reads_features(), p, check);
  check(pool_kernel >= 1, p + ".pool_kernel", "must be >= 1");
}

const std::vector<Field<IfvdOptions>>& IfvdOptions::fields() {
  using S = IfvdOptions;
  static const std::vector<Field<S>> f{{"student", &S::student}, {"teacher", &S::teacher}};
  return f;
}
void IfvdOptions::validate(const std::string& p, const Checker& check) const {
  validate_pairs(student, teacher, reads_features(), p, check);
}

const std::vector<Field<AtOptions>>& AtOptions::fields() {
  using S = AtOptions;
  static const std::vector<Field<S>> f{{"student", &S::student}, {"teacher", &S::teacher}};
  return f;
}
void AtOptions::validate(const std::string& p, const Checker& check) const {
  validate_pairs(student, teacher, reads_features(), p, check);
}

const std::vector<Field<DistOptions>>& DistOptions::fields() {
  using S = DistOptions;
  static const std::vector<Field<S>> f{{"tau", &S::tau}, {"beta", &S::beta}, {"gamma", &S::gamma}};
  return f;
}
void DistOptions::validate(const std::string& p, const Checker& check) const {
  validate_tau(tau, p, check);
  check(std::isfinite(beta) && beta >= 0, p + ".beta", "must be >= 0 (and finite)");
  check(std::isfinite(gamma) && gamma >= 0, p + ".gamma", "must be >= 0 (and finite)");
}

// ------------------------------------------------------------------------------------------------------------------
// DistillOptions

DistillOptions::DistillOptions(const std::string& term_type) : type(term_type) {
  for_each_term_type([&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if (term_type == T::kType) options = T();
  });
}

BoundFields DistillOptions::bind_fields() {
  BoundFields out{{"type", ValueRef(&type)}, {"weight", ValueRef(&weight)}};
  std::visit(
      [&](auto& term) {
        using T = std::decay_t<decltype(term)>;
        if constexpr (!std::is_same_v<T, std::monostate>) {
          for (auto& f : segkd::bind_fields(term)) out.push_back(std::move(f));
        }
      },
      options);
  return out;
}

std::vector<std::string> DistillOptions::keys() const {
  std::vector<std::string> out;
  for (const auto& f : bind_fields()) {
    if (f.name != "type") out.push_back(f.name);
  }
  return out;
}

bool DistillOptions::reads_features() const {
  return std::visit(
      [](const auto& term) {
        if constexpr (std::is_same_v<std::decay_t<decltype(term)>, std::monostate>) {
          return false;
        } else {
          return term.reads_features();
        }
      },
      options);
}

std::pair<std::vector<std::string>, std::vector<std::string>> DistillOptions::feature_pairs() const {
  if (!reads_features()) return {};
  return std::visit(
      [](const auto& term) -> std::pair<std::vector<std::string>, std::vector<std::string>> {
        using T = std::decay_t<decltype(term)>;
        if constexpr (std::is_same_v<T, FeatureOptions> || std::is_same_v<T, CwdOptions> ||
                      std::is_same_v<T, PairwiseOptions> || std::is_same_v<T, IfvdOptions> ||
                      std::is_same_v<T, AtOptions>) {
          return {term.student, term.teacher};
        } else {
          return {};
        }
      },
      options);
}

void DistillOptions::validate(const std::string& prefix) const {
  Shown shown;
  add_shown(bind_fields(), prefix, shown);
  validate(prefix, Checker(nullptr, &shown));
}

void DistillOptions::validate(const std::string& p, const Checker& check) const {
  check.one_of(type, registered_terms(), p + ".type");
  check(std::isfinite(weight) && weight >= 0, p + ".weight", "must be >= 0 (and finite)");
  std::visit(
      [&](const auto& term) {
        using T = std::decay_t<decltype(term)>;
        if constexpr (!std::is_same_v<T, std::monostate>) {
          check(type == T::kType, p + ".type", str_cat("does not match the options given (", T::kType, ")"));
          term.validate(p, check);
        }
      },
      options);
}

std::vector<std::string> registered_terms() {
  std::vector<std::string> out;
  for_each_term_type([&](auto* tag) { out.push_back(std::remove_pointer_t<decltype(tag)>::kType); });
  return out;
}

std::vector<std::pair<std::string, std::string>> distill_key_types() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& type : registered_terms()) {
    const DistillOptions d(type);
    for (const auto& f : d.bind_fields()) {
      auto same = [&](const auto& kt) { return kt.first == f.name; };
      if (std::none_of(out.begin(), out.end(), same)) out.emplace_back(f.name, type_name(f.ref));
    }
  }
  return out;
}

const std::vector<FormerSharedKey>& former_shared_keys() {
  static const std::vector<FormerSharedKey> keys{
      {"tau", "1.0"},           {"resolution", "\"logits\""}, {"mask_ignore", "false"},
      {"student", "[\"layer4\"]"}, {"teacher", "[\"layer4\"]"}, {"normalize", "\"none\""},
      {"projector", "\"conv1x1\""}, {"on", "\"logits\""},       {"pool_kernel", "2"},
      {"beta", "1.0"},          {"gamma", "1.0"}};
  return keys;
}

std::vector<std::pair<std::string, std::string>> render_distill(const DistillOptions& d) {
  const BoundFields fields = d.bind_fields();
  auto find = [&](const std::string& name) {
    return std::find_if(fields.begin(), fields.end(), [&](const BoundField& f) { return f.name == name; });
  };
  std::vector<std::pair<std::string, std::string>> out{{"type", format_value(find("type")->ref)},
                                                       {"weight", format_value(find("weight")->ref)}};
  for (const auto& k : former_shared_keys()) {
    auto it = find(k.name);
    out.emplace_back(k.name, it == fields.end() ? std::string(k.text) : format_value(it->ref));
  }
  for (const auto& f : fields) {
    auto listed = [&](const auto& kt) { return kt.first == f.name; };
    if (std::none_of(out.begin(), out.end(), listed)) out.emplace_back(f.name, format_value(f.ref));
  }
  return out;
}

}  // namespace segkd::losses
