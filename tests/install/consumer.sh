#!/usr/bin/env bash
# Installs the build in $1 (source tree $2) into a temporary prefix and uses it as a consumer would: a CMake project
# with find_package(xent CONFIG REQUIRED), and a program compiled with pkg-config's flags. Both must print the seed
# example's loss (xent.hpp needs C++20; pkg-config cannot say so); and, when xent has its PyTorch operators, a C++
# program calling one of them through find_package's xent::xent_torch. Run by ctest (install_consumer).
set -euo pipefail
build=$1 source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
want="[0.16984604, 0.82474494]"

cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -e "$work/prefix/lib/libxent.so.0" || { echo "no versioned soname libxent.so.0"; exit 1; }

cmake -S "$source/tests/install/consumer" -B "$work/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/cmake" >/dev/null
for program in consumer consumer_static; do
  got=$(LD_LIBRARY_PATH="$work/prefix/lib" "$work/cmake/$program")
  [ "$got" = "$want" ] || { echo "find_package $program printed $got, expected $want"; exit 1; }
done

if [ -e "$work/cmake/consumer_torch" ]; then  # installed with the PyTorch operators
  got=$(LD_LIBRARY_PATH="$work/prefix/lib" "$work/cmake/consumer_torch")
  [ "$got" = "[0.82474494] ok" ] || { echo "find_package consumer_torch printed $got"; exit 1; }
elif [ -e "$build/python/xent/libxent_torch.so" ]; then
  echo "xent was built with its PyTorch operators but the installed package has no xent::xent_torch"; exit 1
fi

flags=$(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --cflags --libs xent)
c++ -std=c++20 "$source/tests/install/consumer/main.cc" $flags -Wl,-rpath,"$work/prefix/lib" -o "$work/pkgconfig_consumer"
got=$("$work/pkgconfig_consumer")
[ "$got" = "$want" ] || { echo "pkg-config consumer printed $got, expected $want"; exit 1; }
echo "find_package and pkg-config consumers: $got"
