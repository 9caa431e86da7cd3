#pragma once
#include "wasmlet_interrupt.h"
#include "wasmlet_sys.h"
