// Boost.JSON is used header-only (Debian ships no libboost_json): this is the one
// translation unit of the project that compiles its sources.
#include <boost/json/src.hpp>
