// tools/command.hpp — subcommands of the `pagewait` program register themselves here.
//
// Each module (demo/, checker/, bench/) compiles one file into the program that defines
//   static pagewait::tool::command_registrar reg{{"demo", "one-line summary", &demo_main}};
// and the program dispatches `pagewait demo ...` to demo_main(argc, argv) with argv[0] = "demo".
#pragma once

#include <string_view>

namespace pagewait::tool {

struct command {
  std::string_view name;
  std::string_view summary;
  int (*run)(int argc, char** argv);
};

struct command_registrar {
  explicit command_registrar(const command& c);
};

}  // namespace pagewait::tool
