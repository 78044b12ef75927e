namespace EphemeralOrleans.Grains.Common;

/// <summary>The one grain storage provider every grain state lives in.</summary>
public static class StorageNames
{
    public const string State = "eo";
}
