/* nnscope: a C11 neural-network training engine that watches itself.
 * The one header programs include. See docs and ../shared/ARCHITECTURE.md. */
#ifndef NNSCOPE_H
#define NNSCOPE_H

#include "nnscope/core.h"
#include "nnscope/hooks.h"
#include "nnscope/module.h"
#include "nnscope/layers.h"
#include "nnscope/optim.h"

#endif
