// tools/main.cpp — the `pagewait` program: `pagewait <command> [options]`.
#include <algorithm>
#include <cstdio>
#include <string_view>
#include <vector>

#include "command.hpp"

namespace pagewait::tool {
namespace {
std::vector<command>& registry() {
  static std::vector<command> r;
  return r;
}

void usage(std::FILE* out) {
  std::fprintf(out, "usage: pagewait <command> [options]\n\ncommands:\n");
  auto cmds = registry();
  std::sort(cmds.begin(), cmds.end(), [](const command& a, const command& b) { return a.name < b.name; });
  for (const command& c : cmds)
    std::fprintf(out, "  %-8.*s %.*s\n", int(c.name.size()), c.name.data(), int(c.summary.size()), c.summary.data());
  std::fprintf(out, "\n`pagewait <command> --help` describes a command's options.\n");
}
}  // namespace

command_registrar::command_registrar(const command& c) { registry().push_back(c); }

}  // namespace pagewait::tool

int main(int argc, char** argv) {
  using namespace pagewait::tool;
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string_view name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    usage(stdout);
    return 0;
  }
  for (const command& c : registry())
    if (c.name == name) return c.run(argc - 1, argv + 1);
  std::fprintf(stderr, "pagewait: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
